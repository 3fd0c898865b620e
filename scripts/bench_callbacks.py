"""What the default callbacks cost the user: whole-process wall time of ``phasewatch fit``.

Configs (the README's configs table, full batch, validation every 20 steps, checkpoints every 500):
  A: configs/modadd_mlp.yaml (embedding MLP, p=59), its full 4,000 steps
  C: configs/modadd_transformer.yaml (1-layer transformer, d_model 128), 1,500 of its 5,000
     steps by default (log-spaced cadences are dense early, so a shorter run over-states the
     overhead)
Arms: ``phasewatch fit --config ... --run.wandb disabled`` with the default callbacks and with
``--run.tracking false``, each a fresh process (start-up, training, checkpoints, the end-of-fit
analysis and closing the store all count), one torch thread. The arms run in pairs, the order
alternating from pair to pair so drift hits both alike, until the 95 % bootstrap interval (over
pairs) of the median ratio default / none is narrower than ``--width`` (0.03) or the config's
``--budget`` seconds are spent; the interval is printed either way.

Diagnostic (``--hooks``, default on): one in-process default run per config with every
callback hook timed: the share of the run spent inside each callback's hooks. What the hooks
do not show (writing the store, Lightning's dispatch, end-of-fit work) is the gap between it and
the end-to-end ratio.

Last line: ``callback overhead: X.XX`` = the larger of the configs' end-to-end (wall) median ratios.
Beside each wall ratio the bench prints the CPU-time (user + system) ratio of the same pairs,
which other processes on a shared machine disturb far less than wall time.

    .venv/bin/python scripts/bench_callbacks.py                       # ~15-25 min, quiet 2 cores
    .venv/bin/python scripts/bench_callbacks.py --steps-a 300 --steps-c 60 --min-pairs 2 \\
        --budget 1 --no-hooks                                         # smoke
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = {"A": "modadd_mlp.yaml", "C": "modadd_transformer.yaml"}


def fit_seconds(config: str, steps: int, tracking: bool, root: str) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``phasewatch fit`` process."""
    cmd = [sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config",
           str(CONFIGS / CONFIG_FILES[config]), "--trainer.max_steps", str(steps),
           "--run.tracking", str(tracking).lower(), "--run.wandb", "disabled",
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", root]
    # one torch thread: fit's own thread rule overrides OMP_NUM_THREADS (it took two on idle A,
    # and the second one's spinning doubled the noise), PHASEWATCH_THREADS binds it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PHASEWATCH_THREADS": "1",
           "WANDB_MODE": "disabled"}
    start, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds, cpu1 = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"bench_callbacks: {' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return seconds, (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)


def median_interval(ratios: list[float], level: float = 0.95, draws: int = 4000,
                    seed: int = 0) -> tuple[float, float, float]:
    """Median of ``ratios`` and its percentile-bootstrap interval (resampling the pairs).

    Example:
        >>> med, lo, hi = median_interval([1.0, 1.02, 0.98, 1.01, 0.99])
        >>> med, lo <= med <= hi
        (1.0, True)
    """
    r = np.asarray(ratios, dtype=float)
    boot = np.median(np.random.default_rng(seed).choice(r, (draws, len(r))), axis=1)
    lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return float(np.median(r)), float(lo), float(hi)


def end_to_end(config: str, steps: int, args: argparse.Namespace, root: str) -> float:
    """Run pairs until the interval is narrow enough or the budget is spent; print, return median."""
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    times: dict[bool, list[float]] = {True: [], False: []}
    start = time.perf_counter()
    while len(ratios) < args.max_pairs:
        order = (False, True) if len(ratios) % 2 == 0 else (True, False)
        pair = {tracking: fit_seconds(config, steps, tracking, root) for tracking in order}
        for tracking, (seconds, _) in pair.items():
            times[tracking].append(seconds)
        ratios.append(pair[True][0] / pair[False][0])
        cpu_ratios.append(pair[True][1] / pair[False][1])
        print(f"# {config} pair {len(ratios)}: default {pair[True][0]:.2f} s, none "
              f"{pair[False][0]:.2f} s, ratio {ratios[-1]:.3f} (CPU time {cpu_ratios[-1]:.3f})",
              flush=True)
        if len(ratios) >= args.min_pairs:
            _, lo, hi = median_interval(ratios)
            if hi - lo < args.width or time.perf_counter() - start > args.budget * 60:
                break
    med, lo, hi = median_interval(ratios)
    print(f"{config:6} steps={steps:<5} none {statistics.median(times[False]):7.2f} s  default "
          f"{statistics.median(times[True]):7.2f} s  ratio {med:.3f}  95% interval "
          f"[{lo:.3f}, {hi:.3f}] (width {hi - lo:.3f}, {len(ratios)} pairs, per pair "
          f"{min(ratios):.3f}-{max(ratios):.3f})", flush=True)
    cmed, clo, chi = median_interval(cpu_ratios)
    print(f"{config:6} CPU time (user + system, robust to other processes): ratio {cmed:.3f} "
          f"95% interval [{clo:.3f}, {chi:.3f}]", flush=True)
    return med


def hook_shares(config: str, steps: int, root: str) -> None:
    """One in-process default run with every callback hook timed; print each callback's share."""
    import pytorch_lightning as pl
    import torch
    import yaml

    from phasewatch.callbacks import TraceLogger, default_callbacks
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule

    torch.set_num_threads(1)
    spent: dict[str, float] = defaultdict(float)
    callbacks = default_callbacks()
    for cb in callbacks:
        _time_hooks(cb, spent)
    cfg = yaml.safe_load((CONFIGS / CONFIG_FILES[config]).read_text())
    pl.seed_everything(cfg["seed_everything"], verbose=False)
    dm = TaskDataModule(**cfg["data"])
    module = PhaseModule(dm.task, **cfg["model"])
    trainer = pl.Trainer(**{**cfg["trainer"], "max_steps": steps}, callbacks=callbacks,
                         logger=TraceLogger(root, name=f"hooks-{config}"),
                         check_val_every_n_epoch=None, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=dm)
    rest = time.perf_counter() - start - sum(spent.values())
    print(f"{config:6} in hooks (one in-process run, share of the rest of it): "
          f"{sum(spent.values()) / rest:.1%}  " +
          "  ".join(f"{name} {seconds / rest:.1%}" for name, seconds in spent.items()), flush=True)


def _time_hooks(cb, spent: dict[str, float]) -> None:
    """Wrap every hook ``cb``'s class overrides so that its wall time adds to ``spent``."""
    import pytorch_lightning as pl

    for name in dir(pl.Callback):
        fn = getattr(cb, name, None)
        if name.startswith("on_") and callable(fn) and \
                getattr(type(cb), name) is not getattr(pl.Callback, name):
            def timed(*args, _fn=fn, _key=type(cb).__name__, **kwargs):
                t0 = time.perf_counter()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    spent[_key] += time.perf_counter() - t0
            setattr(cb, name, timed)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-a", type=int, default=4000)
    ap.add_argument("--steps-c", type=int, default=1500)
    ap.add_argument("--configs", default="A,C")
    ap.add_argument("--width", type=float, default=0.03, help="stop when the 95%% interval is narrower")
    ap.add_argument("--min-pairs", type=int, default=6)
    ap.add_argument("--max-pairs", type=int, default=40)
    ap.add_argument("--budget", type=float, default=12.0, help="minutes per config (after min-pairs)")
    ap.add_argument("--no-hooks", dest="hooks", action="store_false", help="skip the diagnostic")
    args = ap.parse_args(argv)
    steps = {"A": args.steps_a, "C": args.steps_c}
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; wall time, "
          "one torch thread, W&B disabled")
    worst = 0.0
    with tempfile.TemporaryDirectory() as root:
        for cfg in args.configs.split(","):
            worst = max(worst, end_to_end(cfg, steps[cfg], args, root))
            if args.hooks:
                hook_shares(cfg, steps[cfg], root)
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"callback overhead: {worst:.2f}")
    return worst


if __name__ == "__main__":
    main()

"""What the default callbacks cost the user: whole-process wall time of ``phasewatch fit``.

Configs (the README's configs table, full batch, validation every 20 steps, checkpoints every 500),
each run for its own ``max_steps`` unless ``--steps-a`` / ``--steps-c`` say otherwise:
  A: configs/modadd_mlp.yaml (embedding MLP, p=59), 4,000 steps
  C: configs/modadd_transformer.yaml (1-layer transformer, d_model 128), 5,000 steps (log-spaced
     cadences are dense early, so a shorter run over-states the overhead of the full one)
Arms: ``phasewatch fit --config ... --run.wandb disabled`` with the default callbacks and with
``--run.tracking false``, each a fresh process (start-up, training, checkpoints, the end-of-fit
analysis and closing the store all count), one torch thread each. The two arms of a pair run at
the same time, one per core, so that the host's speed, which drifts by ~10 % from minute to minute
on a shared machine, is the same for both (``--sequential``: one after the other, the order
alternating from pair to pair). Side by side, each arm is pinned to one core and the arms
swap cores from pair to pair: on a shared host one core can run slower than the other. Pairs
run until the 95 % bootstrap interval (over pairs) of the median ratio default / none is
narrower than ``--width`` (0.03) or the config's ``--budget`` minutes are spent; the interval
is printed either way.

Diagnostic (``--hooks``, default on): one in-process default run per config with every
callback hook timed: the share of the run spent inside each callback's hooks. What the hooks
do not show (writing the store, Lightning's dispatch, end-of-fit work) is the gap between it and
the end-to-end ratio.

Last line: ``callback overhead: X.XX`` = the larger of the configs' end-to-end (wall) median ratios.
Beside each wall ratio the bench prints the CPU-time (user + system) ratio of the same pairs.

    .venv/bin/python scripts/bench_callbacks.py                       # ~40-60 min, quiet 2 cores
    .venv/bin/python scripts/bench_callbacks.py --steps-a 300 --steps-c 60 --min-pairs 2 \\
        --budget 1 --no-hooks                                         # smoke
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = {"A": "modadd_mlp.yaml", "C": "modadd_transformer.yaml"}


def fit_seconds(config: str, steps: int, tracking: bool, root: str,
                core: int | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one ``phasewatch fit`` process (on ``core`` only)."""
    cmd = [sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config",
           str(CONFIGS / CONFIG_FILES[config]), "--trainer.max_steps", str(steps),
           "--run.tracking", str(tracking).lower(), "--run.wandb", "disabled",
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir",
           os.path.join(root, "default" if tracking else "none")]  # arms may run at once
    # one torch thread: fit's own thread rule overrides OMP_NUM_THREADS (it took two on idle A,
    # and the second one's spinning doubled the noise), PHASEWATCH_THREADS binds it
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PHASEWATCH_THREADS": "1",
           "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    pin = None if core is None else (lambda: os.sched_setaffinity(0, {core}))
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                          env=env, preexec_fn=pin) as proc:
        stderr = proc.stderr.read()
        # this child's own CPU time (RUSAGE_CHILDREN would mix in the concurrent arm's)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"bench_callbacks: {' '.join(cmd)} failed:\n{stderr[-2000:]}")
    return seconds, usage.ru_utime + usage.ru_stime


def run_pair(config: str, steps: int, root: str, sequential: bool, first: bool
             ) -> dict[bool, tuple[float, float]]:
    """{tracking: (wall s, CPU s)} of one pair: in turn (``first`` leads), or side by side, each
    arm on its own core, the arms swapping cores from pair to pair (``first``) so that a core
    slower than the other (its neighbours on the host) weighs on both arms alike."""
    if sequential:
        return {tracking: fit_seconds(config, steps, tracking, root) for tracking in (first, not first)}
    cores = sorted(os.sched_getaffinity(0))[:2]
    with ThreadPoolExecutor(2) as pool:
        futures = {tracking: pool.submit(fit_seconds, config, steps, tracking, root,
                                         cores[int(tracking == first)])
                   for tracking in (False, True)}
        return {tracking: future.result() for tracking, future in futures.items()}


def load_config(config: str) -> dict:
    """The config file of ``config`` ("A" or "C"), parsed."""
    return yaml.safe_load((CONFIGS / CONFIG_FILES[config]).read_text())


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
        pair = run_pair(config, steps, root, args.sequential, first=len(ratios) % 2 == 1)
        for tracking, (seconds, _) in pair.items():
            times[tracking].append(seconds)
        ratios.append(pair[True][0] / pair[False][0])
        cpu_ratios.append(pair[True][1] / pair[False][1])
        print(f"# {config} pair {len(ratios)}: default {pair[True][0]:.2f} s, none "
              f"{pair[False][0]:.2f} s, ratio {ratios[-1]:.3f} (CPU time {cpu_ratios[-1]:.3f})"
              + ("" if args.sequential else f", default on core {'AB'[(len(ratios) + 1) % 2]}"),
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
    print(f"{config:6} CPU time (user + system) ratio {cmed:.3f} "
          f"95% interval [{clo:.3f}, {chi:.3f}]", flush=True)
    return med


def hook_shares(config: str, steps: int, root: str) -> None:
    """One in-process default run with every callback hook timed; print each callback's share."""
    import pytorch_lightning as pl
    import torch

    from phasewatch.callbacks import TraceLogger, default_callbacks
    from phasewatch.trainer.allocator import keep_freed_memory
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule

    torch.set_num_threads(1)
    keep_freed_memory()  # as in `phasewatch fit`
    spent: dict[str, float] = defaultdict(float)
    callbacks = default_callbacks()
    for cb in callbacks:
        _time_hooks(cb, spent)
    cfg = load_config(config)
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
    ap.add_argument("--steps-a", type=int, help="default: the config's max_steps")
    ap.add_argument("--steps-c", type=int, help="default: the config's max_steps")
    ap.add_argument("--sequential", action="store_true",
                    help="run a pair's arms one after the other instead of side by side")
    ap.add_argument("--configs", default="A,C")
    ap.add_argument("--width", type=float, default=0.03, help="stop when the 95%% interval is narrower")
    ap.add_argument("--min-pairs", type=int, default=6)
    ap.add_argument("--max-pairs", type=int, default=40)
    ap.add_argument("--budget", type=float, default=12.0, help="minutes per config (after min-pairs)")
    ap.add_argument("--no-hooks", dest="hooks", action="store_false", help="skip the diagnostic")
    args = ap.parse_args(argv)
    steps = {cfg: getattr(args, f"steps_{cfg.lower()}") or load_config(cfg)["trainer"]["max_steps"]
             for cfg in CONFIG_FILES}
    args.sequential = args.sequential or len(os.sched_getaffinity(0)) < 2  # side by side: 2 cores
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; wall time, one torch "
          f"thread, W&B disabled, pairs {'in turn' if args.sequential else 'side by side'}")
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

"""Overhead of phasewatch's callbacks: the default set at default cadence vs no callbacks.

Configs (the README's configs table, full batch, same Trainer and TraceLogger in every arm; the
full train and val sets are evaluated every 20 steps, as in configs/modadd_*.yaml):
  A: embedding MLP, p=59, frac 0.5, lr 3e-3, wd 1 (4,000 steps: configs/modadd_mlp.yaml)
  C: 1-layer transformer (d_model 128, d_mlp 512), p=59, frac 0.5, lr 1e-3, wd 1
     (1,500 steps by default: a full 3,500-step run takes ~2.5 min per arm here; log-spaced
     cadences are dense early, so a shorter run over-states the overhead)
Arms ``none`` and ``default``, run interleaved ``--repeats`` times; time = process CPU time
(one torch thread; ``--wall`` for wall time) from on_train_start until ``fit`` returns (so
one-off work at the end, such as PhaseMonitor's final analysis, counts in both columns).

Per callback, the time spent inside each callback's hooks during the default arm is measured
directly (``in-hooks``: 1 + that time / the rest of the same run, median over repeats): it
needs no second run, so it is free of the run-to-run noise of a shared machine (several
percent here), in which the end-to-end ratios of single-callback runs drown
(``--per-callback-arms`` adds those runs anyway). Last line: ``callback overhead: X.XX`` = the
largest per-config median ratio (default / none, end to end); the range of the per-repeat
ratios is printed beside it.

    .venv/bin/python scripts/bench_callbacks.py                 # ~13 min on 2 cores
    .venv/bin/python scripts/bench_callbacks.py --steps-a 500 --steps-c 100 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections import defaultdict

import pytorch_lightning as pl
import torch

from phasewatch.callbacks import TraceLogger, default_callbacks
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule

CONFIGS = {
    "A": dict(model="embedding_mlp", lr=3e-3, model_kwargs={}),
    "C": dict(model="transformer1", lr=1e-3, model_kwargs={"d_model": 128, "d_mlp": 512}),
}


class Clock(pl.Callback):
    """Starts at on_train_start (first in the list). CPU time of this process (one torch
    thread): on a shared machine wall time mostly measures the neighbours; ``--wall`` switches
    to wall time."""

    clock = staticmethod(time.process_time)

    def on_train_start(self, trainer, pl_module):
        self.t0 = self.clock()


def time_hooks(cb: pl.Callback, spent: dict[str, float]) -> None:
    """Wrap every hook ``cb`` overrides so that its time adds to ``spent[class name]``."""
    key = type(cb).__name__
    for name in dir(pl.Callback):
        fn = getattr(cb, name, None)
        if name.startswith("on_") and callable(fn) and \
                getattr(type(cb), name) is not getattr(pl.Callback, name):
            def timed(*args, _fn=fn, **kwargs):
                t0 = Clock.clock()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    spent[key] += Clock.clock() - t0
            setattr(cb, name, timed)


def run(config: str, arm: str, steps: int, root: str) -> tuple[float, dict[str, float]]:
    """(time of the training loop, time inside each callback's hooks)."""
    torch.manual_seed(0)
    dm = TaskDataModule("x+y", p=59, frac=0.5, steps_per_epoch=steps)
    module = PhaseModule(dm.task, weight_decay=1.0, **CONFIGS[config])
    cbs = [] if arm == "none" else [c for c in default_callbacks()
                                    if arm == "default" or type(c).__name__ == arm]
    spent: dict[str, float] = defaultdict(float)
    for cb in cbs:
        time_hooks(cb, spent)
    clock = Clock()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=[clock] + cbs,
                         logger=TraceLogger(root, name=f"{config}-{arm}"), val_check_interval=20,
                         log_every_n_steps=20, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    return Clock.clock() - clock.t0, dict(spent)


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-a", type=int, default=4000)
    ap.add_argument("--steps-c", type=int, default=1500)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--configs", default="A,C")
    ap.add_argument("--wall", action="store_true", help="time wall clock, not process CPU")
    ap.add_argument("--per-callback-arms", action="store_true",
                    help="also run each default callback alone (end-to-end ratios)")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    if args.wall:
        Clock.clock = staticmethod(time.perf_counter)
    callbacks = [type(c).__name__ for c in default_callbacks()]
    arms = ["none", "default"] + (callbacks if args.per_callback_arms else [])
    steps = {"A": args.steps_a, "C": args.steps_c}
    worst = 0.0
    with tempfile.TemporaryDirectory() as root:
        print(f"{'config':6} {'arm':20} {'median s':>9} {'ratio':>6} {'in-hooks':>8}"
              f"  ({'wall' if args.wall else 'CPU'} time)")
        for cfg in args.configs.split(","):
            times: dict[str, list[float]] = {a: [] for a in arms}
            hooks: dict[str, list[dict[str, float]]] = {a: [] for a in arms}
            for _ in range(args.repeats):
                for arm in arms:  # interleaved, so load drift hits every arm alike
                    dt, spent = run(cfg, arm, steps[cfg], root)
                    times[arm].append(dt)
                    hooks[arm].append(spent)
                    print(f"# {cfg} {arm} {dt:.3f} s, {sum(spent.values()):.3f} s in hooks",
                          flush=True)
            base = statistics.median(times["none"])

            def in_hooks(arm: str, which: list[str]) -> float:
                return 1 + statistics.median(
                    sum(h.get(c, 0.0) for c in which) / (t - sum(h.values()))
                    for t, h in zip(times[arm], hooks[arm]))

            for arm in arms:
                ratios = [t / b for t, b in zip(times[arm], times["none"])]
                ratio = statistics.median(ratios)
                print(f"{cfg:6} {arm:20} {statistics.median(times[arm]):9.3f} {ratio:6.3f} "
                      f"{in_hooks(arm, callbacks):8.3f}  (ratios {min(ratios):.3f}-{max(ratios):.3f})")
                if arm == "default":
                    worst = max(worst, ratio)
                    for c in callbacks:
                        print(f"{cfg:6} {'  ' + c:20} {'':9} {'':6} {in_hooks(arm, [c]):8.3f}")
            print(f"{cfg:6} steps={steps[cfg]} none median {base:.3f} s")
    print(f"callback overhead: {worst:.2f}")
    return worst


if __name__ == "__main__":
    main()

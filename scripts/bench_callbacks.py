"""Overhead of phasewatch's callbacks: the default set at default cadence vs no callbacks.

Configs (SCIENCE.md section 1, full batch, same Trainer and TraceLogger in every arm; the
full train and val sets are evaluated every 20 steps, as in configs/modadd_*.yaml):
  A: embedding MLP, p=59, frac 0.5, lr 3e-3, wd 1
  C: 1-layer transformer (d_model 128, d_mlp 512), p=59, frac 0.5, lr 1e-3, wd 1
Arms: none, default set, and each default callback alone; run interleaved ``--repeats`` times;
time = process CPU time (one torch thread; ``--wall`` for wall time) from on_train_start to
on_train_end. Prints a table of median ratios
(arm / none), the ``in-hooks`` ratio (1 + time spent inside the arm's hooks / the none arm's
time: what the callbacks themselves cost, free of the run-to-run noise of a shared machine,
without Lightning's dispatch and cache effects) and, last, ``callback overhead: X.XX`` = the
largest per-config median ratio of the default set. Log-spaced cadences are dense early, so a short benchmark over-weights them;
the ``full-run`` column projects the measured extra time per evaluation onto the config's real
length (``--full-a`` / ``--full-c`` steps: the grokking step of SCIENCE.md), keeping the measured
per-step cost.

    .venv/bin/python scripts/bench_callbacks.py                 # ~4 min on 2 cores
    .venv/bin/python scripts/bench_callbacks.py --steps-a 500 --steps-c 100 --repeats 1   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch

from phasewatch.callbacks import TraceLogger, default_callbacks
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule

CONFIGS = {
    "A": dict(model="embedding_mlp", lr=3e-3, model_kwargs={}),
    "C": dict(model="transformer1", lr=1e-3, model_kwargs={"d_model": 128, "d_mlp": 512}),
}


def time_hooks(cb: pl.Callback, spent: list[float]) -> None:
    """Wrap every hook ``cb`` overrides so that its time is added to ``spent[0]``."""
    for name in dir(pl.Callback):
        fn = getattr(cb, name, None)
        if name.startswith("on_") and callable(fn) and \
                getattr(type(cb), name) is not getattr(pl.Callback, name):
            def timed(*args, _fn=fn, **kwargs):
                t0 = Clock.clock()
                try:
                    return _fn(*args, **kwargs)
                finally:
                    spent[0] += Clock.clock() - t0
            setattr(cb, name, timed)


class Clock(pl.Callback):
    """CPU time of this process over the training loop (one torch thread): on a shared machine
    wall time mostly measures the neighbours; ``--wall`` switches to wall time."""

    clock = staticmethod(time.process_time)

    def on_train_start(self, trainer, pl_module):
        self.t0 = self.clock()

    def on_train_end(self, trainer, pl_module):
        self.dt = self.clock() - self.t0


def run(config: str, arm: str, steps: int, root: str) -> tuple[float, float]:
    """(time of the training loop, time spent inside the arm's callback hooks)."""
    torch.manual_seed(0)
    dm = TaskDataModule("x+y", p=59, frac=0.5, steps_per_epoch=steps)
    module = PhaseModule(dm.task, weight_decay=1.0, **CONFIGS[config])
    cbs = default_callbacks()
    if arm == "none":
        cbs = []
    elif arm != "default":
        cbs = [c for c in cbs if type(c).__name__ == arm]
    spent = [0.0]
    for cb in cbs:
        time_hooks(cb, spent)
    clock = Clock()
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=[clock] + cbs,
                         logger=TraceLogger(root, name=f"{config}-{arm}"), val_check_interval=20,
                         log_every_n_steps=20, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    return clock.dt, spent[0]


def n_evals(arm: str, steps: int) -> int:
    """Evaluations of ``arm``'s callbacks (summed over the set) in ``steps`` steps."""
    cbs = [c for c in default_callbacks() if arm == "default" or type(c).__name__ == arm]
    return sum(len(c.cadence.steps(steps)) for c in cbs if hasattr(c, "cadence"))


def projected(arm: str, ratio: float, steps: int, full: int) -> float:
    """Ratio at ``full`` steps: the extra time per evaluation and per step measured here."""
    if arm == "none" or n_evals(arm, steps) == 0:
        return 1.0
    extra_per_eval = (ratio - 1.0) * steps / n_evals(arm, steps)  # in units of one step
    return 1.0 + extra_per_eval * n_evals(arm, full) / full


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps-a", type=int, default=3000)
    ap.add_argument("--steps-c", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", default="A,C")
    ap.add_argument("--full-a", type=int, default=4000)
    ap.add_argument("--full-c", type=int, default=3500)
    ap.add_argument("--wall", action="store_true", help="time wall clock, not process CPU")
    ap.add_argument("--per-callback", action=argparse.BooleanOptionalAction, default=True,
                    help="also time each default callback alone")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(1)
    if args.wall:
        Clock.clock = staticmethod(time.perf_counter)
    arms = ["none", "default"]
    if args.per_callback:
        arms += [type(c).__name__ for c in default_callbacks()]
    steps = {"A": args.steps_a, "C": args.steps_c}
    worst = 0.0
    with tempfile.TemporaryDirectory() as root:
        print(f"{'config':6} {'arm':18} {'median s':>9} {'ratio':>6} {'in-hooks':>8} "
              f"{'full-run':>8}  ({'wall' if args.wall else 'CPU'} time)")
        for cfg in args.configs.split(","):
            times: dict[str, list[float]] = {a: [] for a in arms}
            hooks: dict[str, list[float]] = {a: [] for a in arms}
            for _ in range(args.repeats):
                for arm in arms:  # interleaved, so load drift hits every arm alike
                    dt, in_hooks = run(cfg, arm, steps[cfg], root)
                    times[arm].append(dt)
                    hooks[arm].append(in_hooks)
                    print(f"# {cfg} {arm} {dt:.3f} s, {in_hooks:.3f} s in hooks", flush=True)
            base = statistics.median(times["none"])
            full = {"A": args.full_a, "C": args.full_c}[cfg]
            for arm in arms:
                ratios = [t / b for t, b in zip(times[arm], times["none"])]
                print(f"{cfg:6} {arm:18} {statistics.median(times[arm]):9.3f} "
                      f"{statistics.median(ratios):6.3f} "
                      f"{1 + statistics.median(hooks[arm]) / base:8.3f} "
                      f"{projected(arm, statistics.median(ratios), steps[cfg], full):8.3f}")
            worst = max(worst, statistics.median(
                [t / b for t, b in zip(times["default"], times["none"])]))
            print(f"{cfg:6} steps={steps[cfg]} none median {base:.3f} s")
    print(f"callback overhead: {worst:.2f}")
    return worst


if __name__ == "__main__":
    main()

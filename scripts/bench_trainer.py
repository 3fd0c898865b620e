"""Is the Lightning training path as fast as a bare PyTorch loop doing the same math?

(a) configs A (embedding MLP) and C (1-layer transformer): steps/s of ``PhaseModule`` under
``pl.Trainer`` (TraceLogger writing the SQLite store, evaluation of the full train and val
sets every 20 steps, no tracking callbacks, no checkpoints, no progress bar) against a bare
loop with the same model, AdamW, warmup schedule, loss and evaluation cadence: the default path
(what ``phasewatch fit`` runs: ``PhaseModule(lean_step=True)``, routine store flushes on the
writer thread, ``NullProfiler``) and, for reference, the plain one (Lightning's automatic
optimization, flushes in the training thread, Lightning's default ``PassThroughProfiler``).
All arms run with glibc's malloc thresholds as ``phasewatch fit`` sets them
(``trainer/allocator.py``). The arms are interleaved, ``--reps`` times each; the median ratio
of speeds is printed with the range over repeats (goal >= 0.95 for the default path). A fourth
arm, Lightning's floor, runs a module whose step does no math (one optimizer step of a single
parameter, an empty validation step) under the default path's Trainer: the per-step cost of
Lightning's loop itself, which no module can go below, and the best ratio it leaves for the
config (bare step time / (bare + floor)).
(b) the 1-layer transformer's output-position-only computation against all positions at
d_model 128 (``scripts/bench_transformer.py``; goal >= 2x).
(c) start-up: wall time of ``phasewatch fit --config configs/modadd_mlp.yaml`` stopped after
one training step (an upper bound on command-to-first-step), W&B offline and disabled.

    python scripts/bench_trainer.py [--reps 5] [--threads 0] [--only-a]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from phasewatch.callbacks.trace_logger import TraceLogger
from phasewatch.trainer.allocator import keep_freed_memory
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule
from phasewatch.trainer.null_profiler import NullProfiler

import bench_transformer

CONFIGS = {  # name: (data kwargs, module kwargs, steps timed)
    "A": (dict(task="x+y", p=59, frac=0.5), dict(model="embedding_mlp", lr=3e-3), 1000),
    "C": (dict(task="x+y", p=59, frac=0.5), dict(model="transformer1", lr=1e-3), 200),
}
EVAL_EVERY = 20


class _Clock(pl.Callback):
    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()

    def on_train_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.start


class _NoMath(pl.LightningModule):
    """Lightning's loop and nothing else: a step that only steps the optimizer of one number."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx) -> None:
        self.optimizers().step()  # Lightning counts global_step in the optimizer's step

    def validation_step(self, batch, batch_idx) -> None:
        pass

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD([self.w], lr=0.0)


def lightning_seconds(data_kw: dict, module_kw: dict, steps: int, lean: bool = True,
                      no_math: bool = False) -> float:
    torch.manual_seed(0)
    dm = TaskDataModule(**data_kw)
    module = _NoMath() if no_math else PhaseModule(dm.task, lean_step=lean, **module_kw)
    clock = _Clock()
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(max_steps=steps, val_check_interval=EVAL_EVERY, check_val_every_n_epoch=None,
                             logger=TraceLogger(root, background=lean), callbacks=[clock],
                             enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0, accelerator="cpu", devices=1,
                             profiler=NullProfiler() if lean else None)
        trainer.fit(module, dm)
    return clock.seconds


def bare_seconds(data_kw: dict, module_kw: dict, steps: int) -> float:
    """The same math as PhaseModule under Lightning, in a plain loop."""
    torch.manual_seed(0)
    task = TaskDataModule(**data_kw).task
    module = PhaseModule(task, **module_kw)  # only for its model, loss and optimizer settings
    model, loss_fn = module.model, module.loss_fn
    optimizer = torch.optim.AdamW(model.parameters(), lr=module.hparams.lr,
                                  weight_decay=module.hparams.weight_decay, betas=(0.9, 0.98))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 10))
    history = []
    start = time.perf_counter()
    for step in range(1, steps + 1):
        loss = loss_fn(model(task.train_x), task.train_y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % EVAL_EVERY == 0:
            model.eval()
            with torch.no_grad():
                for x, y in ((task.train_x, task.train_y), (task.val_x, task.val_y)):
                    logits = model(x)
                    history.append((step, loss_fn(logits, y).item(),
                                    (logits.argmax(-1) == y).float().mean().item()))
            model.train()
    return time.perf_counter() - start


def startup_seconds(wandb_mode: str) -> float:
    config = Path(__file__).resolve().parents[1] / "configs" / "modadd_mlp.yaml"
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config", str(config),
                        "--trainer.max_steps", "1", "--trainer.default_root_dir", root,
                        "--run.wandb", wandb_mode, "--trainer.enable_progress_bar", "false"],
                       check=True, capture_output=True, env={**os.environ, "WANDB_SILENT": "true"})
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--only-a", action="store_true", help="part (a) only")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    keep_freed_memory()  # glibc's thresholds as `phasewatch fit` sets them, for every arm
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"(a) Lightning path vs bare loop, threads={torch.get_num_threads()}, reps={args.reps}")
    for name, (data_kw, module_kw, steps) in CONFIGS.items():
        seconds: dict[str, list[float]] = {"bare": [], "default": [], "plain": [], "floor": []}
        for _ in range(args.reps):
            seconds["bare"].append(bare_seconds(data_kw, module_kw, steps))
            seconds["default"].append(lightning_seconds(data_kw, module_kw, steps, lean=True))
            seconds["plain"].append(lightning_seconds(data_kw, module_kw, steps, lean=False))
            seconds["floor"].append(lightning_seconds(data_kw, module_kw, steps, no_math=True))
        print(f"  config {name}: bare {steps / statistics.median(seconds['bare']):7.1f} steps/s")
        for arm in ("default", "plain"):
            ratios = [b / t for b, t in zip(seconds["bare"], seconds[arm])]
            print(f"    Lightning {arm:7} {steps / statistics.median(seconds[arm]):7.1f} steps/s, ratio "
                  f"(Lightning/bare speed) median {statistics.median(ratios):.2f} "
                  f"({min(ratios):.2f}-{max(ratios):.2f})")
        floor = [f / steps * 1e6 for f in seconds["floor"]]
        best = [b / (b + f) for b, f in zip(seconds["bare"], seconds["floor"])]
        print(f"    Lightning floor   {statistics.median(floor):7.1f} us/step (a step with no math, "
              f"{min(floor):.1f}-{max(floor):.1f}): best reachable ratio {statistics.median(best):.2f} "
              f"({min(best):.2f}-{max(best):.2f})")
    if args.only_a:
        return
    print("(b) 1-layer transformer, output position only vs all positions (d_model 128, p=113)")
    bench_transformer.main(["--reps", "5", "--steps", "3"] + (["--threads", str(args.threads)] if args.threads else []))
    print("(c) start-up: `phasewatch fit` of config A stopped after 1 step, wall seconds (median of 3)")
    for mode in ("disabled", "offline"):
        print(f"  W&B {mode:>8}: {statistics.median(startup_seconds(mode) for _ in range(3)):.1f} s")


if __name__ == "__main__":
    pl.seed_everything(0, verbose=False)
    main()

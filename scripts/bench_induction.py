"""Overhead of the InductionProbe at its cadence in configs/induction_heads.yaml ("log:10,min:25,max:100").

Trains the 2-layer induction config (attention-only, d_model 64, 4 heads, pre-LayerNorm,
vocabulary 64, length 48, batches of 64, lr 3e-3; no other phasewatch callbacks) for ``--steps``
steps with ``CircuitCheckpoint([InductionProbe()])`` and reports, in process CPU time (one torch
thread), the time inside the checkpoint's hooks as a share of the rest of the same run (the
measure of scripts/bench_callbacks.py, free of run-to-run noise), plus the number of probe
calls; then the same run without the probe, side by side (CPU time of the whole fit; on a
shared machine its noise is a few percent). Log-spaced cadences are dense early, so a run
shorter than the config's 1,500 steps over-states the share.

    .venv/bin/python scripts/bench_induction.py                     # full 1,500 steps
    .venv/bin/python scripts/bench_induction.py --steps 300         # smoke
    .venv/bin/python scripts/bench_induction.py --per-call 20       # quick: median CPU time of
        # one probe call and of one training step, projected onto the cadence's calls in --steps
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import defaultdict

import pytorch_lightning as pl
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_callbacks import Clock, time_hooks  # noqa: E402

from phasewatch.callbacks import CircuitCheckpoint, InductionProbe, TraceLogger  # noqa: E402
from phasewatch.callbacks.cadence import Cadence  # noqa: E402
from phasewatch.trainer.data import TaskDataModule  # noqa: E402
from phasewatch.trainer.module import PhaseModule  # noqa: E402

CADENCE = "log:10,min:25,max:100"


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--cadence", default=CADENCE)
    ap.add_argument("--per-call", type=int, default=0, metavar="K",
                    help="time K probe calls and K training steps instead of a whole run")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.per_call:
        return per_call(args)
    total, inside = _fit(args, probe=True)
    calls = len(Cadence.parse(args.cadence).steps(args.steps))
    share = inside / (total - inside)
    print(f"steps {args.steps}, cadence {args.cadence!r}: {calls} probe calls, "
          f"{inside:.2f} s in the probe, {total - inside:.2f} s the rest (CPU)")
    print(f"induction probe overhead: {share:.2%}")
    bare, _ = _fit(args, probe=False)
    print(f"side by side: {total:.2f} s with the probe, {bare:.2f} s without (CPU): "
          f"{total / bare - 1:+.2%}")
    return share


def _module(steps: int) -> tuple[TaskDataModule, PhaseModule]:
    dm = TaskDataModule("induction", batch_size=64, steps_per_epoch=steps,
                        task_kwargs={"vocab": 64, "length": 48, "segment": 12, "n_eval": 256})
    module = PhaseModule(dm.task, model="attn_only", lr=3e-3, weight_decay=0.01,
                         model_kwargs={"d_model": 64, "n_heads": 4, "n_layers": 2,
                                       "layer_norm": True})
    return dm, module


def _fit(args, probe: bool) -> tuple[float, float]:
    """CPU seconds of one training run from its start, and of them inside the probe's hooks."""
    torch.manual_seed(0)
    dm, module = _module(args.steps)
    clock, spent = Clock(), defaultdict(float)
    callbacks: list = [clock]
    if probe:
        cb = CircuitCheckpoint([InductionProbe()], cadence=args.cadence)
        time_hooks(cb, spent)
        callbacks.append(cb)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(max_steps=args.steps, accelerator="cpu", devices=1,
                             callbacks=callbacks, logger=TraceLogger(root, name="bench"),
                             limit_val_batches=0, enable_progress_bar=False,
                             enable_model_summary=False, enable_checkpointing=False,
                             num_sanity_val_steps=0)
        trainer.fit(module, datamodule=dm)
    return Clock.clock() - clock.t0, sum(spent.values())


def per_call(args) -> float:
    """Median CPU seconds of one InductionProbe call and of one training step (batch 64)."""
    import statistics
    import time

    from phasewatch.callbacks._base import eval_mode
    from phasewatch.callbacks.circuit import ProbeContext
    dm, module = _module(3 * args.per_call)
    opt = torch.optim.AdamW(module.model.parameters(), lr=3e-3, weight_decay=0.01)
    probe, batches = InductionProbe(), iter(dm.train_dataloader())
    step_t, probe_t = [], []
    for i in range(2 * args.per_call):
        x, y, _ = next(batches)
        t0 = time.process_time()
        loss = module.loss_fn(module.model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step_t.append(time.process_time() - t0)
        if i % 2:
            t0 = time.process_time()
            with eval_mode(module.model):
                probe(module.model, ProbeContext(None, module, i, dm.task))
            probe_t.append(time.process_time() - t0)
    step, call = statistics.median(step_t), statistics.median(probe_t)
    calls = len(Cadence.parse(args.cadence).steps(args.steps))
    share = calls * call / (args.steps * step)
    print(f"one step {step * 1e3:.1f} ms, one probe call {call * 1e3:.1f} ms (CPU, medians); "
          f"{calls} calls in {args.steps} steps at {args.cadence!r}")
    print(f"induction probe overhead (projected): {share:.2%}")
    return share


if __name__ == "__main__":
    main()

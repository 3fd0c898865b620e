"""Time one full-batch training step of the 1-layer transformer in each compute mode.

Forward + backward + AdamW step, p=113, frac 0.3 (3830 examples), d_model 128, on this
machine's CPU, modes interleaved in one process; prints the median ms per step and the
speed-up over the all-positions reference.

    .venv/bin/python scripts/bench_transformer.py [--p 113] [--frac 0.3] [--reps 7] [--steps 5]

Measured 2026-11-27 on the shared 2-core AMD EPYC dev box (load ~3-5), --threads 1:
all 460 ms, last 228 ms (2.0x), vocab 112 ms (4.1x, median of per-round ratios).
With 2 threads on the loaded box every mode was 3-7x slower (OpenMP oversubscription):
all 1600 ms, vocab 744 ms (2.1x) -- prefer torch.set_num_threads(1) on a busy machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from phasewatch.trainer.models import build_model
from phasewatch.trainer.tasks import build_task

MODES = ("all", "last", "vocab")


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=113)
    ap.add_argument("--frac", type=float, default=0.3)
    ap.add_argument("--reps", type=int, default=7, help="timed rounds (median is reported)")
    ap.add_argument("--steps", type=int, default=5, help="training steps per timed round")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    if args.threads:
        torch.set_num_threads(args.threads)
    task = build_task("x+y", p=args.p, frac=args.frac, seed=0)
    x, y = task.train_x, task.train_y
    runs = {}
    for mode in MODES:
        torch.manual_seed(0)
        model = build_model("transformer1", task, compute=mode)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
        runs[mode] = (model, opt, [])

    def step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()

    for model, opt, _ in runs.values():  # warm-up
        for _ in range(2):
            step(model, opt)
    for _ in range(args.reps):
        for model, opt, times in runs.values():  # interleaved: same machine load for all
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step(model, opt)
            times.append((time.perf_counter() - t0) / args.steps * 1e3)
    med = {m: statistics.median(r[2]) for m, r in runs.items()}
    print(f"transformer1 p={args.p} frac={args.frac} N_train={len(x)} "
          f"threads={torch.get_num_threads()} reps={args.reps}x{args.steps} steps")
    for m in MODES:
        ratios = [a / b for a, b in zip(runs["all"][2], runs[m][2])]
        print(f"  {m:>5}: median {med[m]:7.1f} ms/step  speed-up vs all: "
              f"{med['all'] / med[m]:.2f}x (median of per-round ratios "
              f"{statistics.median(ratios):.2f}x)")
    return med


if __name__ == "__main__":
    main()

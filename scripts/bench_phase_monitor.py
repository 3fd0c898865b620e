"""Measure PhaseMonitor on config A: steps / time saved by stop-after-generalization, overhead.

Arms (each ``phasewatch fit --config configs/modadd_mlp.yaml``, W&B disabled, 1 thread):
- ``full``: the default set (its PhaseMonitor only detects) to the full budget;
- ``stop``: plus a user PhaseMonitor with ``stop_after_generalization=N`` (default set's stands down);
- ``bare``/``bare+monitor`` (``--overhead``): no tracking vs. only a PhaseMonitor(every=100).
``--check-cost RUN_DIR`` times one monitor check (store read of the live series + detectors) on
a finished run, the quantity that sets the overhead (checks every ``every`` steps).

Example:
    .venv/bin/python scripts/bench_phase_monitor.py --seeds 0 --after 0
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

from phasewatch.analysis import load_run

CLI = [sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config", "configs/modadd_mlp.yaml",
       "--run.wandb", "disabled", "--trainer.enable_progress_bar", "false"]


def fit(root: str, *extra: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    subprocess.run([*CLI, "--trainer.default_root_dir", root, *extra], check=True, capture_output=True,
                   text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return time.perf_counter() - t0, os.path.realpath(os.path.join(root, "latest"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--after", type=int, default=0, help="stop_after_generalization")
    ap.add_argument("--every", type=int, default=20, help="check cadence of the stopping monitor")
    ap.add_argument("--overhead", action="store_true")
    ap.add_argument("--check-cost", metavar="RUN_DIR", default=None)
    args = ap.parse_args(argv)
    if args.check_cost:
        from phasewatch.analysis.watch import live_events, read_live_trace
        live_events(read_live_trace(args.check_cost)[0])
        n, t0 = 50, time.perf_counter()
        for _ in range(n):
            res, ev = live_events(read_live_trace(args.check_cost)[0])
        ms = (time.perf_counter() - t0) / n * 1000
        print(f"one check on {args.check_cost} ({res.budget} steps): {ms:.1f} ms; events "
              f"{[(e.name, e.step) for e in ev]}")
        return 0
    print("| seed | arm | steps | t_gen | wall s |\n|---|---|---|---|---|")
    for seed in args.seeds:
        seed_args = ["--seed_everything", str(seed), "--data.seed", str(seed)]
        with tempfile.TemporaryDirectory() as tmp:
            arms = {"full": [], "stop": ["--trainer.callbacks+=phasewatch.callbacks.PhaseMonitor",
                                         f"--trainer.callbacks.stop_after_generalization={args.after}",
                                         f"--trainer.callbacks.every={args.every}"]}
            if args.overhead:
                arms.update({"bare": ["--run.tracking", "false"],
                             "bare+monitor": ["--run.tracking", "false",
                                              "--trainer.callbacks+=phasewatch.callbacks.PhaseMonitor",
                                              "--trainer.callbacks.wandb=false"]})
            for arm, extra in arms.items():
                wall, run_dir = fit(os.path.join(tmp, arm), *seed_args, *extra)
                with load_run(run_dir) as run:
                    steps = int(run.series("val/acc")[0][-1])
                    t_gen = (run.meta.get("phasewatch") or {}).get("t_gen")
                print(f"| {seed} | {arm} | {steps} | {t_gen} | {wall:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

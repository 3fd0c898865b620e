"""Measure ``phasewatch sweep`` against a shell loop of ``phasewatch fit``, and the thread policy.

1. Thread policy: wall time of ``phasewatch fit`` (tracking off, W&B disabled) on configs A and
   C with the default (auto) thread count, ``--run.threads 1`` and ``--run.threads <cores>``,
   idle and with one competing busy process; prints the count auto chose (from the fit's log)
   and auto's ratio to each arm (< 1: auto faster).
2. Sweep: ``--trials`` seeds of config A (``--steps`` steps, default tracking on, W&B disabled)
   through ``phasewatch sweep`` (one worker per core) vs the same trials one after another with
   ``phasewatch fit``'s old default of two torch threads (``--run.threads 2``), each a new
   process as in a shell loop. Both wall times are whole commands, start-up included.

The last line reads ``sweep speedup: X.XX`` (loop time / sweep time).

Example:
    .venv/bin/python scripts/bench_sweep.py                      # 8 trials x 4,000 steps
    .venv/bin/python scripts/bench_sweep.py --trials 4 --steps 1000 --policy-steps-a 1000
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Optional

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = {"A": os.path.join(ROOT, "configs", "modadd_mlp.yaml"),
           "C": os.path.join(ROOT, "configs", "modadd_transformer.yaml")}
ENV = {**os.environ, "WANDB_MODE": "disabled"}
PW = [sys.executable, "-m", "phasewatch.analysis.cli"]


def _timed(cmd: list[str], chosen: Optional[list] = None) -> float:
    """Wall seconds of ``cmd``; appends the thread count its fit logged to ``chosen``."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=ENV)
    if chosen is not None:
        chosen += re.findall(r"torch threads: (\d+)", done.stdout + done.stderr)[:1]
    return time.perf_counter() - t0


def _fit(root: str, config: str, steps: int, *extra: str) -> list[str]:
    return [*PW, "fit", "--config", config, "--run.wandb", "disabled", "--trainer.max_steps",
            str(steps), "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir",
            root, *extra]


def thread_policy(tmp: str, configs: dict, repeats: int, cores: int) -> None:
    print(f"| config | load | auto s (threads) | 1 thread s | {cores} threads s | auto / 1 | "
          f"auto / {cores} |")
    print("|---|---|---|---|---|---|---|")
    for load in ("idle", "one busy process"):
        hog = (subprocess.Popen([sys.executable, "-c", "while True: pass"])
               if load != "idle" else None)
        try:
            for name, steps in configs.items():
                arms: dict = {"auto": [], "1": [], str(cores): []}
                chosen: list = []  # the thread counts auto took
                for _ in range(repeats):  # interleaved, so drifting load hits every arm alike
                    for arm in arms:
                        extra = [] if arm == "auto" else ["--run.threads", arm]
                        arms[arm].append(_timed(_fit(os.path.join(tmp, "threads"), CONFIGS[name],
                                                     steps, "--run.tracking", "false", *extra),
                                                chosen if arm == "auto" else None))
                med = {a: statistics.median(v) for a, v in arms.items()}
                print(f"| {name} ({steps} steps) | {load} | {med['auto']:.1f} "
                      f"({'/'.join(sorted(set(chosen))) or '?'}) | {med['1']:.1f} | "
                      f"{med[str(cores)]:.1f} | {med['auto'] / med['1']:.2f} | "
                      f"{med['auto'] / med[str(cores)]:.2f} |", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()


def sweep_vs_loop(tmp: str, trials: int, steps: int) -> float:
    spec = os.path.join(tmp, "bench.yaml")
    with open(spec, "w") as f:
        yaml.safe_dump({"name": "bench", "base": CONFIGS["A"], "seeds": list(range(trials)),
                        "set": {"trainer.max_steps": steps, "run.wandb": "disabled"}}, f)
    t_sweep = _timed([*PW, "sweep", spec, "--out", os.path.join(tmp, "sweep")])
    t_loop = 0.0
    for seed in range(trials):
        t_loop += _timed(_fit(os.path.join(tmp, "loop"), CONFIGS["A"], steps, "--run.threads", "2",
                              "--seed_everything", str(seed), "--data.seed", str(seed)))
    print(f"{trials} trials of config A x {steps} steps: sweep {t_sweep:.1f} s, "
          f"fit loop (2 threads) {t_loop:.1f} s", flush=True)
    return t_loop / t_sweep


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--policy-steps-a", type=int, default=2000)
    ap.add_argument("--policy-steps-c", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=1, help="repeats per thread-policy arm")
    ap.add_argument("--skip-policy", action="store_true")
    ap.add_argument("--policy-configs", default="A,C", help="configs of the thread-policy table")
    args = ap.parse_args(argv)
    print(f"load before: {os.getloadavg()[0]:.2f} (1-min), cores {os.cpu_count()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_policy:
            steps = {"A": args.policy_steps_a, "C": args.policy_steps_c}
            thread_policy(tmp, {c: steps[c] for c in args.policy_configs.split(",")}, args.repeats,
                          max(2, os.cpu_count() or 1))
        speedup = sweep_vs_loop(tmp, args.trials, args.steps)
    print(f"load after: {os.getloadavg()[0]:.2f} (1-min)")
    print(f"sweep speedup: {speedup:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

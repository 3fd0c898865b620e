"""Evaluate the early grokking predictor (``phasewatch.analysis.predict``) on real runs.

Trains (once; existing run dirs are reused) variants of config A that span the outcomes of
SCIENCE.md section 1 -- grokking seeds, wd 0 (memorization), wd 30 (confusion), frac 0.9
(comprehension), frac 0.3 (no generalization within the budget) -- then predicts each run
from its first ``--horizon`` steps only and compares with the offline analysis of the full
run. The predictor is a fixed rule (no parameters fitted on these runs).

Example:
    .venv/bin/python scripts/eval_predictor.py --root runs/predictor_eval --horizon 400
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import time

CONFIG = "configs/modadd_mlp.yaml"
# label -> overrides (the budget is --steps for all)
RUNS = {  # most informative first: the script trains them in this order
    "A-seed0": [],
    "A-wd0-seed0": ["--model.weight_decay", "0"],
    "A-frac0.9-seed0": ["--data.frac", "0.9"],
    "A-wd30": ["--model.weight_decay", "30"],
    "A-frac0.3": ["--data.frac", "0.3"],
    "A-seed1": ["--seed_everything", "1", "--data.seed", "1"],
    "A-seed2": ["--seed_everything", "2", "--data.seed", "2"],
    "A-wd0-seed1": ["--model.weight_decay", "0", "--seed_everything", "1", "--data.seed", "1"],
    "A-frac0.9-seed1": ["--data.frac", "0.9", "--seed_everything", "1", "--data.seed", "1"],
    "A-seed3": ["--seed_everything", "3", "--data.seed", "3"],
}


def run_dir(root: str, label: str) -> str | None:
    found = sorted(d for d in glob.glob(os.path.join(root, f"{label}-*")) if os.path.isdir(d))
    done = [d for d in found if os.path.exists(os.path.join(d, ".done"))]
    return done[-1] if done else None


def train(root: str, label: str, steps: int) -> str:
    """Train one run with ``phasewatch fit`` unless a finished one exists; return its dir."""
    have = run_dir(root, label)
    if have:
        return have
    cmd = [sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config", CONFIG,
           *RUNS[label], "--run.name", label, "--run.wandb", "disabled",
           "--run.checkpoint_every", str(10 * steps), "--trainer.max_steps", str(steps),
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", root]
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 shared cores: threads only contend
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    made = sorted(d for d in glob.glob(os.path.join(root, f"{label}-*")) if os.path.isdir(d))[-1]
    open(os.path.join(made, ".done"), "w").close()
    print(f"trained {label} in {time.perf_counter() - t0:.0f} s -> {made}", flush=True)
    return made


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="runs/predictor_eval")
    ap.add_argument("--steps", type=int, default=4000, help="training budget of every run")
    ap.add_argument("--horizon", type=int, default=400, help="steps the predictor may see")
    ap.add_argument("--train-only", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="labels to use (default: all)")
    args = ap.parse_args(argv)
    labels = args.only or list(RUNS)
    dirs = {lab: train(args.root, lab, args.steps) for lab in labels}
    if args.train_only:
        return 0
    from phasewatch.analysis.predict import evaluate_runs, format_eval_table
    rows = evaluate_runs(dirs, horizon=args.horizon)
    print(format_eval_table(rows, horizon=args.horizon, budget=args.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Corrupted labels trained for real (configs/corrupted_modadd.yaml, 300 steps, default callbacks):
O1 and O3 from the per-example arrays agree with the trainer's own `train/acc_corrupted` curve.

The curve is logged every 5 steps; the per-example arrays (ExampleTracker) on a sparser,
growing schedule (0, 10, 20, 30, 40, 60, ...), so O1's t50/t90 can only be the first array step
at or after the curve's crossing. Measured (seed 0): curve crosses 0.5 at 15 and 0.9 at 25;
O1 onset 20, t50 20 (low 10), t90 30 (low 20); weight decay then un-memorizes the corrupted
labels (curve 0.008 at 260). About 30 s on a busy 2-core box.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import analyze_run, load_run
from phasewatch.trainer.cli import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "corrupted_modadd.yaml")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corrupted")
    main(["--config", CONFIG, "--trainer.max_steps", "300", "--run.wandb", "disabled",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)])
    return (root / "latest").resolve()


def test_o1_and_o3_match_the_corrupted_subset_accuracy_curve(run_dir: Path) -> None:
    res = analyze_run(run_dir)
    trace = load_run(run_dir)
    s, acc = trace.series("train/acc_corrupted")
    array_steps = trace.array_steps("examples/train/correct")
    o1 = res.memorization["o1"]
    assert "subset" not in o1                                    # measured on the tagged corrupted subset
    assert o1["onset"] <= o1["t50"] <= o1["t90"]
    curve = dict(zip(s.tolist(), acc.tolist()))
    for q, key in ((0.5, "t50"), (0.9, "t90")):
        crossing = int(s[np.argmax(acc >= q)])                   # first logged step with acc >= q
        lo, hi = o1[f"{key}_low"], o1[key]
        assert lo in array_steps and hi in array_steps and 0 < hi - lo <= 10   # one array interval
        assert lo < crossing <= hi                                # the crossing lies inside it
        assert curve[hi] >= q and curve.get(lo, 0.0) < q         # same answer from the curve at array steps
    assert (o1["t50"], o1["t90"]) == (20, 30)                    # crossings at 15 and 25 (seed 0)
    assert res.event("corrupted_memorization_t50").step == o1["t50"]

    o3 = res.memorization["o3"]
    first = o3["first_memorized"]["corrupted"]
    assert o1["onset"] <= first["q50"] <= o1["t90"]              # typical corrupted example memorized in the rise
    assert first["memorized"] / first["n"] > 0.99                # curve peaks at 0.998
    final = o3["corrupted"]                                      # final correct streak: few survive weight decay
    last = int(array_steps.max())
    assert final["memorized"] / final["n"] == pytest.approx(curve[last], abs=1e-3)
    assert curve[last] < 0.02 and first["undone"] / first["n"] > 0.98

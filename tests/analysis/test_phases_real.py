"""Nanda phases on real training runs (final-K progress measures), asserting signatures, not numbers.

Config A (configs/modadd_mlp.yaml, ~30-45 s at one thread) runs once per module; C'
(configs/modadd_transformer_small.yaml, ~100+ s) is ``slow``. The corrupted-label quadratic
MLP (MSE) runs for 10 steps: enough for the Fourier probe to say its measures do not apply.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from phase_checks import drop_one_violations, signature_holds_on_samples, value_at

from phasewatch.analysis import analyze_run
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.store import load_run

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def fit(tmp_path_factory, config, *extra):
    root = tmp_path_factory.mktemp(config.split(".")[0])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config",
                           str(CONFIGS / config), "--trainer.default_root_dir", str(root),
                           "--trainer.enable_progress_bar", "false", *extra],
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    run = (root / "latest").resolve()
    with load_run(run) as t:
        trace = MemoryTrace({n: t.series(n)[:2] for n in t.names()}, meta=dict(t.meta))
    return run, trace


@pytest.fixture(scope="module")
def config_a(tmp_path_factory):
    return fit(tmp_path_factory, "modadd_mlp.yaml")


def check_run(run, trace):
    res = analyze_run(run)
    ph = res.phases
    assert ph["measures"] == "final" and not ph.get("insufficient")
    mid = res.transitions["val/acc"]["midpoint"]["step"]
    assert ph["val_midpoint"] == mid
    names = [p["name"] for p in ph["phases"] if p["name"]]
    assert names == sorted(names, key=["memorization", "circuit_formation", "cleanup"].index)
    assert all(p["failed"] for p in ph["phases"] if not p["name"] and p["expected"])   # says why not
    for p in ph["phases"]:
        assert signature_holds_on_samples(trace, p), p
        if p["name"] == "cleanup" and p["end"] < trace.series("circuit/excluded_loss")[0][-1]:
            assert p["end"] >= mid                       # ends at or after the val-acc midpoint
        if any(f.startswith("weight norm rises") for f in p["failed"]):   # the stated reason is true
            assert value_at(trace, "weights/sum_sq", p["end"]) > value_at(trace, "weights/sum_sq", p["start"])
    assert drop_one_violations(trace, ph, mid) == []
    return res


def test_config_a_phases_carry_their_signatures_and_survive_dropping_a_probe(config_a):
    res = check_run(*config_a)
    got = {p["name"]: p for p in res.phases["phases"] if p["name"]}
    assert "memorization" in got
    events = {e.name for e in res.events if e.signal == "phases"}
    assert events == {b["name"] for b in res.phases["boundaries"] if b["name"]}


@pytest.mark.slow
def test_small_transformer_phases_carry_their_signatures(tmp_path_factory):
    """C' memorizes by step 100 and generalizes by ~800 with probes >= 50 steps apart: whatever
    it names must carry its signature and survive dropping a probe (it may name nothing)."""
    check_run(*fit(tmp_path_factory, "modadd_transformer_small.yaml"))


def test_corrupted_label_mse_run_has_no_phases(tmp_path_factory):
    run, trace = fit(tmp_path_factory, "corrupted_modadd.yaml", "--trainer.max_steps", "10")
    res = analyze_run(run)
    assert "not applicable" in res.phases["insufficient"] and "mse" in res.phases["insufficient"]
    assert not [e for e in res.events if e.signal == "phases"]

"""End to end through the real console script: fit config A -> trace store + W&B offline -> analyze."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import load_run
from wandb_records import config_items, history_rows, metric_definitions, offline_run_file

REPO = Path(__file__).resolve().parents[2]
PHASEWATCH = [sys.executable, "-m", "phasewatch.analysis.cli"]


def run_cli(*args: str, cwd: Path, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", **(env_extra or {})}
    env.pop("WANDB_API_KEY", None)
    return subprocess.run([*PHASEWATCH, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def reaches_and_stays(steps: np.ndarray, values: np.ndarray, threshold: float = 0.99) -> int | None:
    """First logged step from which the series never drops below ``threshold`` again."""
    below = np.flatnonzero(values < threshold)
    first = 0 if len(below) == 0 else below[-1] + 1
    return None if first >= len(steps) else int(steps[first])


@pytest.fixture(scope="module")
def grokked_run(tmp_path_factory) -> Path:
    """Config A as shipped, trained by ``phasewatch fit`` with W&B offline and tracking on."""
    root = tmp_path_factory.mktemp("fit")
    done = run_cli("fit", "--config", str(REPO / "configs" / "modadd_mlp.yaml"),
                   "--trainer.default_root_dir", str(root / "runs"),
                   "--trainer.enable_progress_bar", "false", cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return (root / "runs" / "latest").resolve()


def test_config_a_groks_within_budget(grokked_run: Path) -> None:
    run = load_run(grokked_run)
    steps, val_acc = run.series("val/acc")
    assert steps[-1] == 4000 and np.all(np.diff(steps) == 20)
    assert val_acc[-1] >= 0.99
    assert (grokked_run / "config.yaml").is_file()
    assert (grokked_run / "checkpoints" / "last.ckpt").is_file()


def test_analyze_reports_the_steps_the_trace_shows(grokked_run: Path) -> None:
    done = run_cli("analyze", str(grokked_run), cwd=grokked_run)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((grokked_run / "analysis" / "analysis.json").read_text())
    events = {e["name"]: e for e in report["events"]}
    run = load_run(grokked_run)
    t_mem = reaches_and_stays(*run.series("train/acc"))
    t_gen = reaches_and_stays(*run.series("val/acc"))
    assert t_mem is not None and t_gen is not None and t_mem < t_gen
    for name, t, signal in (("memorization", t_mem, "train/acc"), ("generalization", t_gen, "val/acc")):
        e = events[name]   # interpolated between the evaluation before t and t (evaluations every 20)
        assert e["signal"] == signal and e["evidence"]["bracket"] == [t - 20, t] and t - 20 < e["step"] <= t
    assert report["run_class"] == "grokking"
    assert str(events["generalization"]["step"]) in done.stdout


def test_wandb_offline_run_has_the_same_curves(grokked_run: Path) -> None:
    wandb_file = offline_run_file(grokked_run)
    assert metric_definitions(wandb_file)["*"] == "trainer/global_step"
    rows = [r for r in history_rows(wandb_file) if "val/acc" in r]
    steps, val_acc = load_run(grokked_run).series("val/acc")
    assert [r["trainer/global_step"] for r in rows] == steps.tolist()
    np.testing.assert_allclose([r["val/acc"] for r in rows], val_acc, rtol=1e-6)


def test_wandb_config_holds_the_whole_resolved_config(grokked_run: Path) -> None:
    import yaml
    config = {k: v.get("value", v) if isinstance(v, dict) and set(v) <= {"value", "desc"} else v
              for k, v in config_items(offline_run_file(grokked_run)).items()}
    saved = yaml.safe_load((grokked_run / "config.yaml").read_text())
    assert config["trainer"]["max_steps"] == saved["trainer"]["max_steps"] == 4000
    assert config["run"] == saved["run"] and config["run"]["name"] == "modadd_mlp"

"""The W&B round trip with the real wandb library (offline run files read back, loopback only).

- a plain ``phasewatch fit`` (default callbacks) ends with the ``phasewatch/*`` summary keys,
  the events table and the run-directory artifact in its offline ``.wandb`` file, equal to
  the run's analysis.json;
- W&B failing to start (unreachable server, unwritable folder) or failing mid-run never
  stops training nor loses the local trace, and warns once;
- ``phasewatch analyze --wandb`` without credentials: exit 2, one line.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from phasewatch.analysis import load_run
from wandb_records import offline_run_file, read_records, record_items

REPO = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "phasewatch.analysis.cli"]


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    return {**env, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true", **extra}


def summary(path: Path) -> dict:
    """Final value of every summary key (later summary records override earlier ones)."""
    return record_items(path, "summary")


@pytest.fixture(scope="module")
def offline_fit(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("wb") / "runs"
    done = subprocess.run([*CLI, "fit", "--config", str(REPO / "configs" / "modadd_mlp.yaml"),
                           "--data.frac", "0.9", "--trainer.max_steps", "700", "--run.wandb", "offline",
                           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root)],
                          env=clean_env(HOME=str(root.parent)), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return (root / "latest").resolve()


def test_plain_fit_ends_with_the_summary_keys(offline_fit):
    report = json.loads((offline_fit / "analysis" / "analysis.json").read_text())
    events = {e["name"]: e["step"] for e in report["events"]}
    got = summary(offline_run_file(offline_fit))
    assert got["phasewatch/run_class"] == report["run_class"] == "comprehension"
    assert got["phasewatch/t_mem"] == events["memorization"] and got["phasewatch/t_gen"] == events["generalization"]
    assert 500 <= got["phasewatch/t_gen"] <= 700 and got["phasewatch/censored"] is False
    assert "insufficient" not in report["phases"], "config A with the Fourier probe has Nanda phases"
    boundaries = report["phases"]["boundaries"]
    for b in boundaries:
        assert got.get(f"phasewatch/phase/{b['name']}") == (b["step"] if b["name"] else None)
    # media land as nested summary items: phasewatch/events/{_type, nrows, ...}
    assert got["phasewatch/events/_type"] == "table-file"
    assert got["phasewatch/events/nrows"] == len(report["events"])
    assert got["phasewatch/figures/_type"] == "images/separated" and got["phasewatch/figures/count"] >= 2
    # the store still agrees with what W&B got
    with load_run(offline_fit) as run:
        assert run.meta["phasewatch"]["t_gen"] == got["phasewatch/t_gen"]
        assert run.meta["status"] == "success"


def test_run_directory_is_an_artifact(offline_fit):
    arts = [r.artifact for r in read_records(offline_run_file(offline_fit))
            if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "phasewatch-run"]
    assert len(arts) == 1
    paths = {c.path for c in arts[0].manifest.contents}
    assert {"trace.sqlite", "config.yaml", "analysis/analysis.json"} <= paths
    assert not any(p.startswith(("wandb/", "checkpoints/")) for p in paths)


def test_unreachable_server_never_stops_training(tmp_path):
    root = tmp_path / "runs"
    env = clean_env(WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9", WANDB_INIT_TIMEOUT="5",
                    HOME=str(tmp_path))
    done = subprocess.run([*CLI, "fit", "--config", str(REPO / "configs" / "modadd_mlp.yaml"),
                           "--trainer.max_steps", "60", "--run.wandb", "online", "--trainer.enable_progress_bar",
                           "false", "--trainer.default_root_dir", str(root)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("W&B could not start") == 1
    run = load_run((root / "latest").resolve())
    steps, _ = run.series("val/acc")
    assert steps[-1] == 60 and len(steps) == 3 and run.meta["status"] == "success"
    assert run.meta["phasewatch"]["run_class"] in ("memorization", "confusion")


def fit_in_process(tmp_path, extra_callbacks=(), break_wandb=None, steps=100):
    from phasewatch.callbacks import PhaseMonitor, TraceLogger
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule
    from phasewatch.trainer.wandb_logger import build_wandb_logger
    pl.seed_everything(0)
    torch.set_num_threads(1)
    dm = TaskDataModule("x+y", p=59, frac=0.5, seed=0)
    module = PhaseModule(dm.task, lr=3e-3, weight_decay=1.0)
    trace = TraceLogger(str(tmp_path / "runs"), name="wb")
    os.makedirs(trace.log_dir, exist_ok=True)
    if break_wandb == "folder":
        (Path(trace.log_dir) / "wandb").write_text("a file where W&B wants its folder")
    wb = build_wandb_logger(trace.log_dir, name="wb", mode="offline")
    loggers = [trace] + ([wb] if wb is not None else [])
    mon = PhaseMonitor(every=20, figures=False)
    trainer = pl.Trainer(max_steps=steps, val_check_interval=20, check_val_every_n_epoch=None,
                         log_every_n_steps=20, logger=loggers, callbacks=[mon, *extra_callbacks],
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, enable_checkpointing=False, accelerator="cpu")
    trainer.fit(module, datamodule=dm)
    return trainer, wb, trace


class FinishWandb(pl.Callback):
    """Kills the W&B run under the logger at a given hook (as if its service died)."""

    def __init__(self, logger_ref, hook):
        self.ref, self.hook = logger_ref, hook

    def _finish(self, trainer):
        for lg in trainer.loggers:
            if type(lg).__name__ == "SafeWandbLogger":
                lg.experiment.finish()

    def on_train_batch_end(self, trainer, *args):
        if self.hook == "mid" and trainer.global_step == 50:
            self._finish(trainer)

    def on_train_end(self, trainer, pl_module):
        if self.hook == "end":
            self._finish(trainer)


def w_and_b_warnings(record) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)
            and ("W&B" in str(w.message))]


@pytest.mark.parametrize("case", ["folder", "mid", "end"])
def test_wandb_failure_warns_once_and_keeps_the_trace(tmp_path, monkeypatch, case):
    for k in [k for k in os.environ if k.startswith("WANDB_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("WANDB_SILENT", "true")
    extra = [] if case == "folder" else [FinishWandb(None, case)]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        trainer, wb, trace = fit_in_process(tmp_path, extra, break_wandb=case)
    msgs = w_and_b_warnings(record)
    assert len(msgs) == 1, msgs
    assert {"folder": "W&B could not start", "mid": "W&B logging stopped",
            "end": "could not push the analysis to W&B"}[case] in msgs[0]
    assert (wb is None) == (case == "folder")
    run = load_run(trace.log_dir)
    steps, _ = run.series("val/acc")
    assert steps.tolist() == [20, 40, 60, 80, 100] and trainer.global_step == 100
    assert run.meta["status"] == "success" and run.meta["phasewatch"]["run_class"] == "confusion"
    assert (Path(trace.log_dir) / "analysis" / "analysis.json").is_file()


def test_analyze_wandb_without_credentials_exits_2(tmp_path):
    done = subprocess.run([*CLI, "analyze", "--wandb", "someone/phasewatch/abc123"],
                          env=clean_env(HOME=str(tmp_path)), capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no W&B credentials" in lines[0] and "someone/phasewatch/abc123" in lines[0]
    assert not (tmp_path / "runs").exists()
    bad = subprocess.run([*CLI, "analyze", "--wandb", "not-a-path"], env=clean_env(HOME=str(tmp_path)),
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "ENTITY/PROJECT/RUN_ID" in bad.stderr

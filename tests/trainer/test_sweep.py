"""`phasewatch sweep` on a real Dask LocalCluster (2 worker processes) and `phasewatch aggregate`."""

from __future__ import annotations

import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("distributed")

from phasewatch.analysis import load_run  # noqa: E402
from phasewatch.analysis.analyzer import analyze_run  # noqa: E402
from phasewatch.analysis.cli import main  # noqa: E402
from phasewatch.analysis.sweep_state import SweepState  # noqa: E402

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")
TINY = {"run.tracking": False, "run.wandb": "disabled", "run.threads": 1}


def _spec(tmp: Path, name: str, **fields) -> str:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "base": CONFIG, **fields}))
    return str(path)


def _steps(run_dir: str, name: str) -> list[int]:
    trace = load_run(run_dir)
    try:
        return trace.series(name)[0].tolist()
    finally:
        trace.close()


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory):
    """4 trials (wd 1, 3 x seeds 0, 1) of 200 steps; trial (wd 3, seed 1) raises in the worker."""
    tmp = tmp_path_factory.mktemp("sweep")
    spec = _spec(tmp, "fails", grid={"model.weight_decay": [1, 3]}, seeds=[0, 1],
                 set={**TINY, "trainer.max_steps": 200},
                 trials=[{"where": {"model.weight_decay": 3, "seed": 1}, "set": {"model.lr": -1}}])
    out = tmp / "out"
    rc = main(["sweep", spec, "--out", str(out), "--workers", "2", "--retries", "1"])
    return spec, out, rc


def test_a_failing_trial_is_recorded_and_retried_while_the_others_finish(failing_sweep) -> None:
    _, out, rc = failing_sweep
    assert rc == 1
    trials = {json.dumps(t.params, sort_keys=True): t for t in SweepState(out).trials()}
    assert len(trials) == 4
    bad = trials[json.dumps({"model.weight_decay": 3, "seed": 1}, sort_keys=True)]
    assert bad.status == "failed" and bad.attempts == 2
    assert "model.lr must be positive" in bad.error
    done = [t for t in trials.values() if t is not bad]
    assert all(t.status == "done" and t.attempts == 1 for t in done)
    for t in done:
        run_dir = out / t.run_dir
        assert run_dir.parent.name == t.id and (run_dir / "config.yaml").is_file()
        assert _steps(str(run_dir), "train/loss") == list(range(20, 201, 20))
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert config["model"]["weight_decay"] == t.params["model.weight_decay"]
        assert config["seed_everything"] == config["data"]["seed"] == t.params["seed"]


def test_aggregate_draws_the_classes_each_trial_trace_gives(failing_sweep) -> None:
    _, out, _ = failing_sweep
    assert main(["aggregate", str(out)]) == 0
    agg = out / "aggregate"
    assert (agg / "phase_diagram.png").stat().st_size > 10_000 and (agg / "index.html").is_file()
    expected: dict = {}
    for t in SweepState(out).trials():
        if t.status == "done":  # the analyzer on the trial's own trace, not the sweep's record
            cls = analyze_run(out / t.run_dir).run_class
            expected.setdefault(t.params["model.weight_decay"], []).append(cls)
    with open(agg / "cells.csv") as f:
        rows = {float(r["model.weight_decay"]): r for r in csv.DictReader(f)}
    assert set(rows) == set(expected)
    for wd, classes in expected.items():
        assert rows[wd]["n"] == str(len(classes))
        counts = ";".join(f"{c}:{classes.count(c)}" for c in sorted(set(classes)))
        assert rows[wd]["classes"] == counts
        assert float(rows[wd]["agreement"]) == max(classes.count(c) for c in classes) / len(classes)


def test_rerun_retrains_no_finished_trial_and_retries_the_failed_one(failing_sweep) -> None:
    spec, out, _ = failing_sweep
    before = {t.id: t for t in SweepState(out).trials()}
    stamps = {t.id: (out / t.run_dir / "trace.sqlite").stat().st_mtime_ns
              for t in before.values() if t.status == "done"}
    assert main(["sweep", spec, "--out", str(out), "--workers", "2", "--retries", "0"]) == 1
    after = {t.id: t for t in SweepState(out).trials()}
    for tid, stamp in stamps.items():
        assert (out / after[tid].run_dir / "trace.sqlite").stat().st_mtime_ns == stamp
        assert after[tid].attempts == before[tid].attempts
    (bad,) = [t for t in after.values() if t.status == "failed"]
    assert bad.attempts == before[bad.id].attempts + 1


def _kill_after_a_checkpoint(trial_root: Path, killed: list) -> None:
    """SIGKILL the trial's worker once a checkpoint exists and its step's rows are on disk (a
    kill between the checkpoint's save and the logging of its step is the gap the report names)."""
    while not killed:  # the test appends "stop" when the sweep returned
        runs, attempt = list(trial_root.glob("*/trace.sqlite")), trial_root / "attempt.json"
        if runs and attempt.is_file():
            try:
                trace = load_run(runs[0].parent)
                ckpt = (trace.meta.get("last_checkpoint") or {}).get("step", -1)
                last = max(trace.series("val/acc")[0].tolist(), default=-1)
                trace.close()
            except (ValueError, OSError, KeyError):
                ckpt, last = -1, -1
            if 0 < ckpt <= last:
                pid = json.loads(attempt.read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.02)


def test_a_killed_worker_resumes_its_trial_without_duplicated_or_missing_steps(tmp_path) -> None:
    spec = _spec(tmp_path, "killed", seeds=[0],
                 set={**TINY, "trainer.max_steps": 1200, "run.checkpoint_every": 100})
    out = tmp_path / "out"
    killed: list = []
    killer = threading.Thread(target=_kill_after_a_checkpoint, args=(out / "t000", killed))
    killer.start()
    try:
        rc = main(["sweep", spec, "--out", str(out), "--workers", "2"])
    finally:
        killed.append("stop")
        killer.join()
    assert rc == 0 and isinstance(killed[0], int)
    (trial,) = SweepState(out).trials()
    assert trial.status == "done" and trial.attempts == 2 and "KilledWorker" in trial.error
    assert json.loads((out / "t000" / "attempt.json").read_text())["resume"] is not None
    run_dir = out / trial.run_dir
    assert [p for p in (out / "t000").iterdir() if p.is_dir() and not p.is_symlink()] == [run_dir]
    for name in ("train/loss", "val/acc"):
        assert _steps(str(run_dir), name) == list(range(20, 1201, 20))
    # the same command again: nothing to train, no cluster started, the trace untouched
    stamp = (run_dir / "trace.sqlite").stat().st_mtime_ns
    assert main(["sweep", spec, "--out", str(out)]) == 0
    assert (run_dir / "trace.sqlite").stat().st_mtime_ns == stamp
    assert SweepState(out).trials()[0].attempts == 2


@pytest.mark.parametrize("fields, message", [
    ({"grid": {"model.weight_decy": [1, 3]}}, "unknown config key 'model.weight_decy' "
                                              "(did you mean 'model.weight_decay'?)"),
    ({"grid": {"model.weight_decay": ["heavy"]}}, "model.weight_decay"),
    ({"gird": {"model.weight_decay": [1]}}, "unknown field 'gird' (did you mean 'grid'?)"),
    ({"grid": {"model.weight_decay": 1}}, "must be a non-empty list"),
    ({"grid": {"model.lr": [1]}, "seeds": "0"}, "'seeds' must be a non-empty list"),
])
def test_a_bad_spec_fails_before_anything_runs(tmp_path, capsys, fields, message) -> None:
    spec = _spec(tmp_path, "bad", **fields)
    assert main(["sweep", spec, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("phasewatch sweep: error: ") and message in err[-1]
    assert not (tmp_path / "out").exists()


def test_the_shipped_example_specs_expand_and_validate() -> None:
    from phasewatch.trainer.sweep import validate
    from phasewatch.trainer.sweep_spec import load_spec

    root = Path(CONFIG).parents[1] / "sweeps"
    full = load_spec(str(root / "modadd_wd_frac.yaml"))
    assert len(full.trial_params()) == 5 * 3 * 3 and full.base == CONFIG
    small = load_spec(str(root / "modadd_wd_frac_small.yaml"))
    validate(small, small.trial_params())  # raises on a key or value fit rejects
    assert small.fit_args(small.trial_params()[0])[:2] == ["--config", CONFIG]


def test_rows_at_the_checkpoint_step_are_on_disk_before_the_next_flush(tmp_path) -> None:
    """A resumed run does not log the checkpoint's step again: those rows must survive a kill."""
    from pytorch_lightning.callbacks import ModelCheckpoint

    from phasewatch.callbacks.trace_logger import TraceLogger

    logger = TraceLogger(root_dir=tmp_path, name="r", version="v1", flush_every_rows=10**6,
                         flush_every_s=3600)
    logger.log_metrics({"val/acc": 0.1}, step=80)
    checkpoint = ModelCheckpoint(dirpath=str(tmp_path / "ckpt"))
    checkpoint._last_global_step_saved = 100
    logger.after_save_checkpoint(checkpoint)
    logger.log_metrics({"val/acc": 0.2}, step=100)
    logger.log_metrics({"val/acc": 0.3}, step=120)  # after the checkpoint's step: may wait
    assert _steps(logger.log_dir, "val/acc") == [80, 100]  # read while the writer is still open
    logger.finalize("success")
    assert _steps(logger.log_dir, "val/acc") == [80, 100, 120]

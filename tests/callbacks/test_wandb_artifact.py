"""The run-directory artifact: the store is copied with SQLite's backup API, whatever the path."""
from __future__ import annotations

import numpy as np
import wandb

from phasewatch.analysis import TraceWriter, load_run
from phasewatch.callbacks.wandb_push import _add_run_dir


def test_artifact_holds_the_whole_store_for_a_path_with_hash_and_question_mark(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run_dir = tmp_path / "runs#1?x=%41" / "r-20260101-000000-abcd"
    reader_open = None
    with TraceWriter(run_dir, flush_every_rows=10) as w:
        for step in range(300):
            w.log_scalars({"val/acc": step / 300}, step=step)
        w.log_array("w", 5, np.arange(6.0))
        w.flush()
        reader_open = load_run(run_dir)  # a live reader: the rows are still in the WAL
        staging = tmp_path / "staging"
        staging.mkdir()
        art = wandb.Artifact("run-x", type="phasewatch-run")
        _add_run_dir(art, run_dir, staging)
    reader_open.close()
    entries = art.manifest.entries
    assert sorted(entries) == ["arrays/w.bin", "trace.sqlite"]  # no lock / pid files
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "trace.sqlite").write_bytes(open(entries["trace.sqlite"].local_path, "rb").read())
    (copy / "arrays").mkdir()
    (copy / "arrays" / "w.bin").write_bytes((run_dir / "arrays" / "w.bin").read_bytes())
    run = load_run(copy)
    steps, values = run.series("val/acc")
    assert steps.tolist() == list(range(300)) and values[-1] == 299 / 300
    assert run.array("w", 5).tolist() == list(np.arange(6.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "runs#1?x=%41", "staging"]

"""The trace store on real SQLite files: round trip, dedupe, truncation, supersede, errors, and a
reader running while a writer process writes."""
from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time

import numpy as np
import pytest

from phasewatch.analysis import RunTrace, TraceStoreError, TraceWriter, load_run
from phasewatch.analysis.store import RunDirBusy


def test_round_trip_scalars_arrays_events_meta(tmp_path):
    with TraceWriter(tmp_path, flush_every_rows=3) as w:
        for step in [5, 1, 3]:
            w.log_scalars({"train/loss": 1.0 / step, "val/acc": step / 10}, step=step)
        w.log_scalars({"odd": float("nan")}, step=2)
        w.log_scalars({"odd": float("inf")}, step=4)
        w.log_scalars({"odd": -np.inf}, step=6)
        w.log_array("neurons/freq", 1, np.arange(6, dtype=np.float32).reshape(2, 3))
        w.log_array("neurons/freq", 3, np.ones((2, 3), dtype=np.float32))
        w.log_event("generalization", 3, "val/acc", {"low": 2, "high": 4})
        w.set_meta("hparams", {"lr": 0.1})
    run = load_run(tmp_path)
    assert isinstance(run, RunTrace) and run.path == tmp_path
    assert run.names() == ["odd", "train/loss", "val/acc"]
    steps, values = run.series("train/loss")
    assert steps.dtype == np.int64 and values.dtype == np.float64
    assert steps.tolist() == [1, 3, 5]
    np.testing.assert_allclose(values, [1.0, 1 / 3, 0.2])
    steps, values = run.series("odd")
    assert steps.tolist() == [2, 4, 6]
    assert np.isnan(values[0]) and values[1] == np.inf and values[2] == -np.inf
    assert run.array_names() == ["neurons/freq"]
    s, stacked = run.arrays("neurons/freq")
    assert s.tolist() == [1, 3] and stacked.shape == (2, 2, 3) and stacked.dtype == np.float32
    assert run.array("neurons/freq", 1)[1, 2] == 5.0
    assert run.events() == [{"name": "generalization", "step": 3, "signal": "val/acc",
                             "payload": {"low": 2, "high": 4}}]
    meta = run.meta
    assert meta["schema_version"] == 2 and meta["hparams"] == {"lr": 0.1} and meta["sessions"] == 1
    # one append-only log per name: two float32 [2, 3] payloads back to back
    assert [p.name for p in tmp_path.glob("arrays/*")] == ["neurons%2Ffreq.bin"]
    assert (tmp_path / "arrays" / "neurons%2Ffreq.bin").stat().st_size == 2 * 6 * 4


def test_relogged_step_replaces_not_duplicates(tmp_path):
    with TraceWriter(tmp_path, flush_every_rows=2) as w:
        w.log_scalars({"a": 1.0}, step=1)
        w.log_scalars({"a": 2.0}, step=2)   # flush here: chunk 1 = steps 1, 2
        w.log_scalars({"a": 20.0}, step=2)  # same (name, step) in a later flush
        w.log_scalars({"a": 3.0}, step=3)
        w.log_scalars({"a": 30.0}, step=3)  # same step twice inside one flush window
        w.log_array("x", 2, np.zeros(2))
        w.log_array("x", 2, np.ones(2))
        w.log_event("e", 2, "a", {"v": 1})
        w.log_event("e", 2, "a", {"v": 2})
    run = load_run(tmp_path)
    steps, values = run.series("a")
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [1.0, 20.0, 30.0]
    assert run.arrays("x")[0].tolist() == [2] and run.array("x", 2).tolist() == [1.0, 1.0]
    assert [e["payload"] for e in run.events()] == [{"v": 2}]


def test_truncate_after_removes_rows_and_array_files(tmp_path):
    w = TraceWriter(tmp_path, flush_every_rows=4)
    for step in range(10):
        w.log_scalars({"a": float(step), "b": -float(step)}, step=step)
        w.log_array("arr", step, np.full(3, step))
        w.log_event("tick", step, None, {})
    removed = w.truncate_after(4)
    assert removed == 5 * 2 + 5 + 5
    w.log_scalars({"a": 100.0}, step=5)
    w.close()
    run = load_run(tmp_path)
    assert run.series("a")[0].tolist() == [0, 1, 2, 3, 4, 5]
    assert run.series("a")[1][-1] == 100.0
    assert run.series("b")[0].tolist() == [0, 1, 2, 3, 4]
    assert run.arrays("arr")[0].tolist() == [0, 1, 2, 3, 4]
    # the log is cut after the payload of step 4 (5 payloads of 3 int64)
    assert (tmp_path / "arrays" / "arr.bin").stat().st_size == 5 * 3 * 8
    assert [e["step"] for e in run.events()] == [0, 1, 2, 3, 4]
    assert run.events()[0]["signal"] is None


def test_new_session_supersedes_rows_after_its_first_step(tmp_path):
    with TraceWriter(tmp_path) as w:  # the "dead" process: logged up to 9
        for step in range(10):
            w.log_scalars({"train/loss": float(step)}, step=step)
        w.log_scalars({"cb/val": 1.0}, step=5)  # logged after the step-5 checkpoint
        w.log_array("arr", 8, np.zeros(1))
    with open(tmp_path / "arrays" / "arr.bin", "ab") as f:
        f.write(b"orphan payload, index never flushed")
    with TraceWriter(tmp_path, supersede=True) as w:  # resumed at checkpoint 5: first step 5
        for step in range(5, 8):
            w.log_scalars({"train/loss": 10.0 * step}, step=step)
    run = load_run(tmp_path)
    steps, values = run.series("train/loss")
    assert steps.tolist() == list(range(8))
    assert values.tolist() == [0, 1, 2, 3, 4, 50, 60, 70]
    assert run.series("cb/val")[0].tolist() == [5]  # rows AT the first step are kept
    assert run.array_names() == [] and not list(tmp_path.glob("arrays/*"))
    assert run.meta["sessions"] == 2
    assert run.meta["superseded_by_session_2"] == {"first_step": 5, "removed_rows": 5}


def test_reopen_without_supersede_keeps_rows(tmp_path):
    with TraceWriter(tmp_path) as w:
        w.log_scalars({"a": 1.0}, step=10)
    with TraceWriter(tmp_path) as w:  # default: no supersede (importers, analysis events)
        w.log_scalars({"a": 2.0}, step=3)
    assert load_run(tmp_path).series("a")[0].tolist() == [3, 10]


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="flush_every_rows"):
        TraceWriter(tmp_path, flush_every_rows=0)
    with TraceWriter(tmp_path) as w:
        with pytest.raises(ValueError, match="-1"):
            w.log_scalars({"a": 1.0}, step=-1)
        with pytest.raises(ValueError, match="'a'"):
            w.log_scalars({"a": "high"}, step=1)
        with pytest.raises(ValueError, match="dtype object"):
            w.log_array("x", 1, np.array([{}, 1], dtype=object))
        with pytest.raises(ValueError, match=r"dtype datetime64\[D\]"):
            w.log_array("t", 1, np.array(["2026-11-27"], dtype="datetime64[D]"))


def _store_with_rows(tmp_path):
    with TraceWriter(tmp_path) as w:
        for step in range(2000):
            w.log_scalars({"val/acc": step / 2000, "val/loss": 1.0}, step=step)
    return tmp_path / "trace.sqlite"


def test_missing_path_and_missing_file(tmp_path):
    with pytest.raises(TraceStoreError, match="does not exist") as e:
        load_run(tmp_path / "nope")
    assert str(tmp_path / "nope") in str(e.value)
    with pytest.raises(TraceStoreError, match="no trace store") as e:
        load_run(tmp_path)
    assert "trace.sqlite" in str(e.value)


def test_garbage_and_truncated_files_name_the_file(tmp_path):
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "trace.sqlite").write_bytes(b"not a database at all\n" * 50)
    with pytest.raises(TraceStoreError, match="not a SQLite") as e:
        load_run(tmp_path / "g")
    assert str(tmp_path / "g" / "trace.sqlite") in str(e.value)
    with pytest.raises(TraceStoreError, match="not a SQLite"):
        TraceWriter(tmp_path / "g")
    db = _store_with_rows(tmp_path / "t")
    data = db.read_bytes()
    assert len(data) > 8192
    for cut in (len(data) // 2 + 100, (len(data) // 2) // 4096 * 4096):  # mid-page, page boundary
        db.write_bytes(data[:cut])
        with pytest.raises(TraceStoreError, match="truncated") as e:
            load_run(db)  # the trace.sqlite path itself is accepted too
        assert str(db) in str(e.value)
    with pytest.raises(TraceStoreError, match="truncated"):
        TraceWriter(db.parent)  # never appends to a truncated file


def test_missing_table_and_schema_versions(tmp_path):
    db = _store_with_rows(tmp_path / "m")
    with sqlite3.connect(db) as c:
        c.execute("DROP TABLE events")
    with pytest.raises(TraceStoreError, match=r"missing table\(s\) \['events'\]") as e:
        load_run(db.parent)
    assert str(db) in str(e.value)
    db = _store_with_rows(tmp_path / "v")
    for version, msg in [(3, "newer phasewatch"), (1, "older phasewatch"), ("x", "unknown schema")]:
        with sqlite3.connect(db) as c:
            c.execute("UPDATE meta SET value=? WHERE key='schema_version'", (json.dumps(version),))
        with pytest.raises(TraceStoreError, match=msg) as e:
            load_run(db.parent)
        assert str(db) in str(e.value)
    with pytest.raises(TraceStoreError, match="schema_version"):
        TraceWriter(db.parent)


def test_array_logs_round_trip_every_dtype_and_shape(tmp_path):
    payloads = {"u8": np.arange(5, dtype=np.uint8), "f16": np.linspace(0, 1, 7).astype(np.float16),
                "big": np.arange(4, dtype=">f4"), "flags": np.array([True, False]),
                "scalar": np.array(3.5), "empty": np.zeros((0, 3)),
                "strided": np.arange(12, dtype=np.int64).reshape(3, 4)[:, ::2]}
    with TraceWriter(tmp_path) as w:
        for step in (2, 1):  # out of order: arrays() sorts by step
            for name, arr in payloads.items():
                w.log_array(name, step, (arr * step).astype(arr.dtype))
    run = load_run(tmp_path)
    for name, arr in payloads.items():
        steps, stacked = run.arrays(name)
        assert steps.tolist() == [1, 2], name  # np.stack may return native byte order
        assert stacked.dtype.newbyteorder("=") == arr.dtype.newbyteorder("="), name
        np.testing.assert_array_equal(stacked[1], (arr * 2).astype(arr.dtype))
        one = run.array(name, 1)
        assert one.shape == arr.shape and one.dtype == arr.dtype and one.flags.writeable, name


def test_a_cut_keeps_logs_of_empty_payloads_and_a_second_writer_is_refused(tmp_path):
    w = TraceWriter(tmp_path)
    w.log_array("empty", 1, np.zeros((0, 3)))
    w.log_array("x", 1, np.ones(2))
    with pytest.raises(RunDirBusy, match=rf"{tmp_path}: another writer \(PID {os.getpid()}\)"):
        TraceWriter(tmp_path)  # one writer per run directory, even within one process
    assert w.truncate_after(5) == 0
    w.log_array("x", 6, np.full(2, 6.0))
    w.close()
    with TraceWriter(tmp_path) as again:  # the lock went with the first writer's close()
        again.log_array("y", 2, np.arange(4.0))
    run = load_run(tmp_path)
    assert run.array("empty", 1).shape == (0, 3)
    assert run.arrays("x")[1].tolist() == [[1.0, 1.0], [6.0, 6.0]]
    assert run.array("y", 2).tolist() == [0.0, 1.0, 2.0, 3.0]


def test_truncated_array_log_names_the_file(tmp_path):
    with TraceWriter(tmp_path) as w:
        for step in range(3):
            w.log_array("x", step, np.full(10, step, dtype=np.float64))
    log = tmp_path / "arrays" / "x.bin"
    with open(log, "r+b") as f:
        f.truncate(2 * 80 + 8)  # the step-2 payload loses 72 of its 80 bytes
    run = load_run(tmp_path)
    assert run.array("x", 1).tolist() == [1.0] * 10  # intact payloads still read
    with pytest.raises(TraceStoreError, match=r"8 of 80 bytes") as e:
        run.arrays("x")
    assert str(log) in str(e.value)


def test_unknown_series_lists_close_names(tmp_path):
    _store_with_rows(tmp_path)
    run = load_run(tmp_path)
    with pytest.raises(TraceStoreError, match=r"unknown series 'val/ac'.*'val/acc'"):
        run.series("val/ac")
    with pytest.raises(TraceStoreError, match="unknown array"):
        run.arrays("w")
    assert isinstance(TraceStoreError("x"), ValueError)


_WRITER = """
import sys, time
import numpy as np
from phasewatch.analysis import TraceWriter
w = TraceWriter(sys.argv[1], flush_every_rows=50, flush_every_s=0.05)
for step in range(int(sys.argv[2])):
    w.log_scalars({"a": float(step), "b": 2.0 * step}, step=step)
    if step % 10 == 0:
        w.log_array("v", step, np.full(1000, step, dtype=np.int32))
    if step % 100 == 0:
        time.sleep(0.002)
w.close()
"""


def test_concurrent_reader_while_writer_process_writes(tmp_path):
    n = 20000
    TraceWriter(tmp_path).close()  # the file exists before the reader starts
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), str(n)])
    seen = []
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            with load_run(tmp_path) as run:
                if "a" in run.names():
                    steps, values = run.series("a")
                    # every snapshot is a consistent prefix: steps 0..k-1, values equal steps
                    assert steps.tolist() == list(range(len(steps)))
                    np.testing.assert_array_equal(values, steps.astype(float))
                    seen.append(len(steps))
                if "v" in run.array_names():  # every indexed array payload is complete
                    s, v = run.arrays("v")
                    assert s.tolist() == list(range(0, 10 * len(s), 10))
                    np.testing.assert_array_equal(v, np.repeat(s[:, None], 1000, 1))
            time.sleep(0.01)
    finally:
        assert proc.wait(timeout=60) == 0
    assert any(0 < k < n for k in seen), seen[:20]
    steps, values = load_run(tmp_path).series("b")
    assert len(steps) == n and values[-1] == 2.0 * (n - 1)


def test_close_compacts_many_small_chunks(tmp_path):
    w = TraceWriter(tmp_path, flush_every_rows=1)  # one chunk per point
    for step in range(100):
        w.log_scalars({"a": float(step)}, step=step)
    w.log_scalars({"a": -1.0}, step=50)  # a later re-log of step 50 must still win
    w.log_scalars({"few": 1.0}, step=0)
    with sqlite3.connect(tmp_path / "trace.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM scalars").fetchone()[0] == 102
    w.close()
    with sqlite3.connect(tmp_path / "trace.sqlite") as c:
        assert c.execute("SELECT COUNT(*) FROM scalars").fetchone()[0] == 2
    steps, values = load_run(tmp_path).series("a")
    assert steps.tolist() == list(range(100)) and values[50] == -1.0 and values[51] == 51.0

"""Nothing lost, nobody in: one writer per run directory, self-contained stores, confined and
checked array paths, tolerant meta, out-of-range steps (real SQLite files, real processes)."""
from __future__ import annotations

import shutil
import signal
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from phasewatch.analysis import TraceStoreError, TraceWriter, load_run
from phasewatch.analysis.store import RunDirBusy

_HOLDER = """
import sys, time
from phasewatch.analysis import TraceWriter
w = TraceWriter(sys.argv[1])
w.log_scalars({"a": 1.0}, step=1); w.flush()
print("ready", flush=True)
time.sleep(120)
"""


def test_second_writer_process_is_refused_naming_the_pid_until_the_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunDirBusy, match=rf"another writer \(PID {holder.pid}\)"):
            TraceWriter(tmp_path)
        assert load_run(tmp_path).series("a")[1].tolist() == [1.0]  # readers need no lock
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with TraceWriter(tmp_path, supersede=True) as w:  # the OS dropped the dead holder's lock
        w.log_scalars({"a": 2.0}, step=2)
    assert load_run(tmp_path).series("a")[1].tolist() == [1.0, 2.0]


def test_store_closed_while_a_reader_is_open_holds_every_row_in_the_file_alone(tmp_path):
    run, alone = tmp_path / "run", tmp_path / "copy"
    TraceWriter(run).close()
    reader = load_run(run)  # e.g. `watch` or a notebook, open through the whole run
    w = TraceWriter(run, flush_every_rows=100)
    n = 5000
    for step in range(n):
        w.log_scalars({"a": float(step), "b": -float(step)}, step=step)
        if step % 1000 == 999:
            assert 0 < len(reader.series("a")[0]) <= step + 1  # the reader really reads meanwhile
    w.set_meta("status", "success")
    w.close()
    alone.mkdir()
    shutil.copy(run / "trace.sqlite", alone / "trace.sqlite")  # no -wal, no -shm
    reader.close()
    copied = load_run(alone)
    steps, values = copied.series("b")
    assert steps.tolist() == list(range(n)) and values.tolist() == [-float(s) for s in range(n)]
    assert copied.meta["status"] == "success"


def test_array_paths_outside_the_run_directory_are_refused(tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"x" * 64)
    run = tmp_path / "run"
    with TraceWriter(run) as w:
        w.log_array("w", 1, np.zeros(8, np.uint8))
    for rel in ("../secret.bin", "arrays/../../secret.bin", str(secret), "trace.sqlite"):
        with sqlite3.connect(run / "trace.sqlite") as c:
            c.execute("UPDATE arrays SET relpath=?, nbytes=8, shape='[8]', dtype='|u1'", (rel,))
        with pytest.raises(TraceStoreError, match="points outside"):
            load_run(run).arrays("w")
        with pytest.raises(TraceStoreError, match="points outside"):
            load_run(run).array("w", 1)


@pytest.mark.parametrize("shape, dtype, nbytes, why", [
    ("[1000000000, 1000000000]", "<f8", 8, "index says 8 bytes"),       # MemoryError before
    ("[8]", "|O", 64, "invalid dtype"),                                  # object: pickles
    ("[8]", "not-a-dtype", 64, "invalid dtype"),
    ("[8]", "<V8", 64, "invalid dtype"),
    ('"eight"', "<f8", 64, "invalid shape"),                             # TypeError before
    ("[-8]", "<f8", 64, "invalid shape"),
    ("[1e3]", "<f8", 64, "invalid shape"),
    ("[" * 5000 + "]" * 5000, "<f8", 64, "invalid shape"),               # RecursionError
    ("[800]", "<f8", 6400, "has 64 of 6400 bytes"),                      # beyond the file
])
def test_crafted_index_rows_give_one_clear_error(tmp_path, shape, dtype, nbytes, why):
    with TraceWriter(tmp_path) as w:
        w.log_array("w", 1, np.zeros(8))
    with sqlite3.connect(tmp_path / "trace.sqlite") as c:
        c.execute("UPDATE arrays SET shape=?, dtype=?, nbytes=?", (shape, dtype, nbytes))
    with pytest.raises(TraceStoreError, match=why) as e:
        load_run(tmp_path).arrays("w")
    assert "x.bin" not in str(e.value) and "w.bin" in str(e.value)


def test_non_json_meta_values_read_as_text(tmp_path):
    with TraceWriter(tmp_path) as w:
        w.log_scalars({"a": 1.0}, step=1)
        w.set_meta("status", "success")
    with sqlite3.connect(tmp_path / "trace.sqlite") as c:
        c.execute("INSERT INTO meta VALUES ('foreign', '{not json')")
        c.execute("INSERT INTO events(step, name, signal, payload) VALUES (1, 'e', '', 'nope')")
    run = load_run(tmp_path)
    assert run.meta["foreign"] == "{not json" and run.meta["status"] == "success"
    assert run.events()[0]["payload"] == "nope"


@pytest.mark.parametrize("step", [1e30, float("inf"), float("nan"), -1, 2**63, 0.5, "x"])
def test_out_of_range_steps_are_refused_naming_the_value(tmp_path, step):
    with TraceWriter(tmp_path) as w:
        with pytest.raises(ValueError, match=r"step must be an integer in \[0, 2\*\*63-1\]"):
            w.log_scalars({"a": 1.0}, step=step)
        with pytest.raises(ValueError, match=r"step must be an integer"):
            w.log_series("a", [0, step], [1.0, 2.0])
        w.log_series("a", np.array([2**63 - 1, 0]), [2.0, 1.0])  # the int64 extremes are fine
    assert load_run(tmp_path).series("a")[0].tolist() == [0, 2**63 - 1]

"""The trace store of a run directory: a torch-free writer (this module) and reader (store_read).

Layout of a run directory::

    RUN/trace.sqlite   meta, names, scalars, events, arrays (index)   SQLite, WAL mode
    RUN/arrays/<quoted name>.bin     every payload of one array name, appended (``arraylog``)

SQLite (stdlib, ``journal_mode=WAL``, ``synchronous=NORMAL``) gives crash-safe appends and one
writer with any number of concurrent readers. One writer per run directory is enforced by an
OS-level lock (``runlock``: ``RUN/.writer.lock``, the holder's PID in ``RUN/.writer.pid``) that
dies with its process; a second writer gets ``RunDirBusy`` naming that PID; readers take no lock.
``close()`` folds the WAL into ``trace.sqlite`` (TRUNCATE checkpoint) and leaves WAL mode when
no reader is connected: a finished or failed run's ``trace.sqlite`` alone holds every row. Appends are held in memory and written in one
transaction every ``flush_every_rows`` rows or ``flush_every_s`` seconds (checked at each log
call), on ``flush()`` and on ``close()``: a killed process loses at most the last flush window,
never the file. A (name, step) is stored once: logging it again replaces the old row.

Resume / supersede rule. When a new writer session with ``supersede=True`` (what TraceLogger
uses) opens an existing store, the first step it logs, ``f``, marks where it takes over: rows of earlier sessions with ``step > f`` are deleted
(scalars, events, array index rows and their files) before anything is written; rows AT ``f``
are kept and replaced row by row if the new session logs the same (name, step). Why ``> f`` and
not ``>= f``: with Lightning, a checkpoint saved by ``ModelCheckpoint(every_n_train_steps=K)``
at ``global_step == K`` is written in ``on_train_batch_end``, i.e. BEFORE Lightning logs the
``self.log`` metrics of that batch (at step ``K - 1``: Lightning's logger step is
``global_step - 1`` for train and in-epoch validation metrics), before validation at K (also
logged at ``K - 1``) and before ``on_validation_end`` callbacks that log at ``global_step == K``.
A run resumed from that checkpoint does NOT redo batch K nor validation at K; its first rows are
at step K (train metrics of batch K+1) or K+1 (callbacks logging at ``global_step`` in
``on_train_batch_end``). So rows at steps <= K written by the dead process after the checkpoint
are the only copy and must survive; everything it wrote after step K+1 is superseded; rows at
K / K+1 are re-logged by the new session and replaced by the UNIQUE(name, step) keys. For an
exact cut use ``truncate_after(step)`` explicitly. Either cut also trims each array log to the
end of its last indexed payload (bytes a killed process appended but never indexed).

Example:
    >>> import tempfile, numpy as np
    >>> from phasewatch.analysis.store import TraceWriter
    >>> from phasewatch.analysis import load_run
    >>> d = tempfile.mkdtemp()
    >>> with TraceWriter(d) as w:
    ...     w.log_scalars({"train/loss": 0.5}, step=1)
    ...     w.log_array("w", 1, np.zeros(3))
    >>> load_run(d).series("train/loss")
    (array([1]), array([0.5]))
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import numpy as np

from .arraylog import ARRAYS_DIR, ArrayLogs
from .chunks import MAX_STEP, check_step, check_steps, pack_chunk, unpack_chunks  # noqa: F401
from .runlock import RunDirBusy, RunLock

__all__ = ["SCHEMA_VERSION", "TRACE_FILE", "ARRAYS_DIR", "MAX_STEP", "TraceStoreError",
           "TraceWriter", "RunDirBusy", "RunTrace", "load_run"]

SCHEMA_VERSION = 2  # 2: array payloads in append-only logs (1: one .npz file per payload)
TRACE_FILE = "trace.sqlite"
# buffered rows of one flush: scalars by name id, events, array index rows, meta
_Batch = tuple[dict[int, tuple[list[int], list[float]]], list[tuple], list[tuple], dict[str, str]]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS names(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS scalars(
    name_id INTEGER NOT NULL, seq INTEGER NOT NULL, step_min INTEGER NOT NULL,
    step_max INTEGER NOT NULL, n INTEGER NOT NULL, steps BLOB NOT NULL, vals BLOB NOT NULL,
    PRIMARY KEY(name_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY, step INTEGER NOT NULL, name TEXT NOT NULL,
    signal TEXT NOT NULL, payload TEXT NOT NULL, UNIQUE(name, step, signal));
CREATE TABLE IF NOT EXISTS arrays(
    name TEXT NOT NULL, step INTEGER NOT NULL, relpath TEXT NOT NULL, offset INTEGER NOT NULL,
    nbytes INTEGER NOT NULL, shape TEXT NOT NULL, dtype TEXT NOT NULL,
    PRIMARY KEY(name, step)) WITHOUT ROWID;
"""
# scalars: one row per (series, flush): little-endian int64 steps + float64 values (NaN/inf
# bit-exact), clustered by (name_id, seq). Not one row per point: sqlite3 builds a tuple per row,
# so 10^6 one-point rows read in ~1.0 s on the dev box vs ~0.07 s as chunks (scripts/bench_store.py).
# The reader keeps the LAST write of each step (INSERT OR REPLACE semantics); truncate_after /
# supersede rewrite chunks that straddle the cut; close() compacts series with many chunks.
REQUIRED_TABLES = ("meta", "names", "scalars", "events", "arrays")


class TraceStoreError(ValueError):
    """A run directory / trace store that cannot be read or written; the message names the file."""


def _as_float(value: Any, name: str) -> float:
    try:
        return float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError) as e:  # RuntimeError: multi-element tensor
        raise ValueError(f"scalar {name!r} must be a number, got {value!r}") from e


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; on error roll back only if a transaction is still open
    (after e.g. a full disk SQLite has already rolled back, and a second ROLLBACK would replace
    the real error by 'cannot rollback - no transaction is active')."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


class TraceWriter:
    """Append scalars, arrays, events and meta to ``run_dir/trace.sqlite`` (batched, crash-safe).

    Args:
        run_dir: the run directory (created if missing).
        flush_every_rows: buffered rows that trigger a flush.
        flush_every_s: seconds since the last flush after which the next log call flushes.
        supersede: apply the resume supersede rule (module docstring) at the first logged step;
            the training process's writer (TraceLogger) sets it, other writers (importers,
            analysis adding events) must not: they would delete every row after their first step.
        scratch: the directory is private until complete and is thrown away on failure
            (``importers`` build in a temporary folder, then rename): no journal, no fsync.

    Example:
        >>> import tempfile
        >>> w = TraceWriter(tempfile.mkdtemp(), flush_every_rows=1000)
        >>> w.log_scalars({"val/acc": 0.9}, step=10); w.close()
    """

    def __init__(self, run_dir: str | os.PathLike, flush_every_rows: int = 1000,
                 flush_every_s: float = 5.0, supersede: bool = False, scratch: bool = False) -> None:
        if int(flush_every_rows) < 1:
            raise ValueError(f"flush_every_rows must be >= 1, got {flush_every_rows!r}")
        if not float(flush_every_s) >= 0:
            raise ValueError(f"flush_every_s must be >= 0, got {flush_every_s!r}")
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / TRACE_FILE
        self.flush_every_rows = int(flush_every_rows)
        self.flush_every_s = float(flush_every_s)
        self._supersede_pending = bool(supersede)
        self._scalars: dict[int, tuple[list[int], list[float]]] = {}
        self._n_scalars = 0
        self._events: list[tuple[int, str, str, str]] = []
        self._arrays: list[tuple[str, int, str, int, int, str, str]] = []
        self._meta: dict[str, str] = {}
        self._name_ids: dict[str, int] = {}
        self._last_flush = time.monotonic()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = RunLock(self.run_dir).acquire()  # one writer per run directory
        try:
            self._logs = ArrayLogs(self.run_dir)
            self._conn: sqlite3.Connection | None = self._open("OFF" if scratch else "WAL")
        except BaseException:
            self._lock.release()
            raise

    # ------------------------------------------------------------------ connection
    def _open(self, journal: str) -> sqlite3.Connection:
        if self.path.exists() and self.path.stat().st_size:
            from .store_read import _check_file
            _check_file(self.path)  # never append to a garbage or truncated file
        try:
            conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None,
                                   check_same_thread=False)  # BackgroundTraceWriter
            conn.execute(f"PRAGMA journal_mode={journal}")
            conn.execute(f"PRAGMA synchronous={'NORMAL' if journal == 'WAL' else 'OFF'}")
            row = None
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if "meta" in tables:
                row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as e:
            raise TraceStoreError(f"{self.path}: not a readable phasewatch trace store ({e}); "
                                  "move it away or choose another run directory") from e
        if row is not None and json.loads(row[0]) != SCHEMA_VERSION:
            conn.close()
            raise TraceStoreError(f"{self.path}: schema_version {row[0]} is not {SCHEMA_VERSION}; "
                                  "write with the phasewatch version that created it or use a new run dir")
        if tables and "meta" not in tables:
            conn.close()
            raise TraceStoreError(f"{self.path}: SQLite file without a 'meta' table is not a "
                                  "phasewatch trace store; choose another run directory")
        conn.executescript("BEGIN;" + _SCHEMA + "COMMIT;")
        sessions = conn.execute("SELECT value FROM meta WHERE key='sessions'").fetchone()
        self.session = json.loads(sessions[0]) + 1 if sessions else 1  # 1, 2, ... per open
        with_tx = [("schema_version", json.dumps(SCHEMA_VERSION)), ("sessions", json.dumps(self.session))]
        if row is None:
            with_tx.append(("created_at", json.dumps(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))))
        conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", with_tx)
        self._name_ids = {n: i for i, n in conn.execute("SELECT id, name FROM names")}
        self._seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM scalars").fetchone()[0]
        hold(self.path, +1)  # from here on this process never opens the file outside SQLite
        return conn

    closed = property(lambda self: self._conn is None, doc="True after close().")

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise TraceStoreError(f"{self.path}: writer is closed; open a new TraceWriter")
        return self._conn

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ logging
    def _begin_step(self, step: Any) -> int:
        step = check_step(step)
        if self._supersede_pending:
            self._supersede_pending = False
            removed = self._delete_after(step)
            if removed:
                self.set_meta(f"superseded_by_session_{self.session}",
                              {"first_step": step, "removed_rows": removed})
        return step

    def log_scalars(self, metrics: Mapping[str, Any], step: int) -> None:
        """Buffer ``{name: value}`` at ``step`` (NaN / inf kept); re-logging a (name, step) replaces it."""
        step = self._begin_step(step)
        for name, value in metrics.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"scalar name must be a non-empty str, got {name!r}")
            buf = self._scalars.setdefault(self._name_id(name), ([], []))
            buf[0].append(step)
            buf[1].append(_as_float(value, name))
            self._n_scalars += 1
        self.maybe_flush()

    def log_event(self, name: str, step: int, signal: str | None = None,
                  payload: Mapping[str, Any] | None = None) -> None:
        """Buffer one event (e.g. a detected phase change); ``payload`` must be JSON-serializable."""
        step = self._begin_step(step)
        try:
            text = json.dumps(dict(payload or {}), default=_json_default)
        except (TypeError, ValueError) as e:
            raise ValueError(f"event {name!r} payload is not JSON-serializable: {e}") from e
        self._events.append((step, str(name), "" if signal is None else str(signal), text))
        self.maybe_flush()

    def log_array(self, name: str, step: int, array: Any) -> None:
        """Append ``array`` to the log of ``name`` now (``arraylog``); its index row is buffered."""
        step = self._begin_step(step)
        if not isinstance(name, str) or not name:
            raise ValueError(f"array name must be a non-empty str, got {name!r}")
        arr = np.asarray(array)
        if arr.dtype.kind in "OVMm":  # object, structured, datetime: no plain bytes round trip
            raise ValueError(f"array {name!r} has dtype {arr.dtype}; pass a numeric, bool or "
                             "string numpy array")
        rel, offset, nbytes = self._logs.append(name, arr)
        self._arrays.append((name, step, rel, offset, nbytes, json.dumps(list(arr.shape)),
                             arr.dtype.str))
        self.maybe_flush()

    def set_meta(self, key: str, value: Any) -> None:
        """Set a JSON-serializable meta value (written at the next flush)."""
        try:
            self._meta[str(key)] = json.dumps(value, default=_json_default)
        except (TypeError, ValueError) as e:
            raise ValueError(f"meta {key!r} is not JSON-serializable: {e}") from e
        self.maybe_flush()

    def _name_id(self, name: str) -> int:
        nid = self._name_ids.get(name)
        if nid is None:
            db = self._db()
            db.execute("INSERT OR IGNORE INTO names(name) VALUES (?)", (name,))
            nid = db.execute("SELECT id FROM names WHERE name=?", (name,)).fetchone()[0]
            self._name_ids[name] = nid
        return nid

    # ------------------------------------------------------------------ flushing
    @property
    def pending_rows(self) -> int:
        return self._n_scalars + len(self._events) + len(self._arrays) + len(self._meta)

    def _due(self) -> bool:
        return (self.pending_rows >= self.flush_every_rows
                or time.monotonic() - self._last_flush >= self.flush_every_s)

    def maybe_flush(self) -> None:
        """Flush if ``flush_every_rows`` rows are buffered or ``flush_every_s`` seconds passed."""
        if self._due():
            self.flush()

    def flush(self) -> None:
        """Write all buffered rows in one transaction (kept buffered if it fails)."""
        db = self._db()
        batch = self._take_batch()
        if batch is None:
            return
        try:
            self._write_batch(batch, db)
        except BaseException:
            self._restore_batch(batch)
            raise

    def _take_batch(self) -> "_Batch | None":
        """The buffered rows (the buffers start empty again), or None when there are none."""
        self._last_flush = time.monotonic()
        if not self.pending_rows:
            return None
        batch = (self._scalars, self._events, self._arrays, self._meta)
        self._scalars, self._events, self._arrays, self._meta = {}, [], [], {}
        self._n_scalars = 0
        return batch

    def _restore_batch(self, batch: "_Batch") -> None:
        """Put the rows of a batch that failed to write back in front of the buffered ones."""
        scalars, events, arrays, meta = batch
        for nid, (steps, vals) in self._scalars.items():
            old = scalars.setdefault(nid, ([], []))
            old[0].extend(steps)
            old[1].extend(vals)
        meta.update(self._meta)
        self._scalars, self._events, self._arrays, self._meta = \
            scalars, events + self._events, arrays + self._arrays, meta
        self._n_scalars = sum(len(steps) for steps, _ in scalars.values())

    def _write_batch(self, batch: "_Batch", db: sqlite3.Connection) -> None:
        """One transaction with every row of ``batch`` (the payloads reach the OS first)."""
        scalars, events, arrays, meta = batch
        self._logs.sync()  # payload bytes reach the OS before the rows that point at them
        with _transaction(db):
            self._seq += 1
            seq = self._seq
            db.executemany("INSERT INTO scalars(name_id, seq, step_min, step_max, n, steps, vals) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [(nid, seq, *pack_chunk(st, va)) for nid, (st, va) in scalars.items()])
            db.executemany("INSERT OR REPLACE INTO events(step, name, signal, payload) "
                           "VALUES (?, ?, ?, ?)", events)
            db.executemany("INSERT OR REPLACE INTO arrays(name, step, relpath, offset, nbytes, "
                           "shape, dtype) VALUES (?, ?, ?, ?, ?, ?, ?)", arrays)
            db.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                           list(meta.items()))

    def truncate_after(self, step: int) -> int:
        """Flush, then delete every row with step > ``step`` (and trim the array logs); returns
        rows removed."""
        if isinstance(step, bool) or int(step) != step:
            raise ValueError(f"step must be an integer, got {step!r}")
        self.flush()
        return self._delete_after(int(step))

    def delete_series(self, names: list[str]) -> int:
        """Flush, then delete every row of the scalar series ``names``; returns rows removed."""
        self.flush()
        db, n = self._db(), 0
        for name in names:
            if name in self._name_ids:
                nid = self._name_ids[name]
                n += db.execute("SELECT COALESCE(SUM(n), 0) FROM scalars WHERE name_id=?",
                                (nid,)).fetchone()[0]
                db.execute("DELETE FROM scalars WHERE name_id=?", (nid,))
        return n

    def _delete_after(self, step: int) -> int:
        db = self._db()
        with _transaction(db):
            n = db.execute("SELECT COALESCE(SUM(n), 0) FROM scalars WHERE step_min > ?",
                           (step,)).fetchone()[0]
            db.execute("DELETE FROM scalars WHERE step_min > ?", (step,))
            straddling = db.execute("SELECT name_id, seq, steps, vals FROM scalars "
                                    "WHERE step_max > ?", (step,)).fetchall()
            for nid, seq, sb, vb in straddling:  # rewrite chunks that cross the cut
                st, va = np.frombuffer(sb, dtype="<i8"), np.frombuffer(vb, dtype="<f8")
                keep = st <= step
                n += int((~keep).sum())
                db.execute("UPDATE scalars SET step_min=?, step_max=?, n=?, steps=?, vals=? "
                           "WHERE name_id=? AND seq=?", (*pack_chunk(st[keep], va[keep]), nid, seq))
            for table in ("events", "arrays"):
                n += db.execute(f"DELETE FROM {table} WHERE step > ?", (step,)).rowcount
        # also drops bytes a killed process appended but never indexed
        self._logs.truncate_to_index(dict(db.execute(
            "SELECT relpath, MAX(offset + nbytes) FROM arrays GROUP BY relpath")))
        return n

    def compact(self, min_chunks: int = 64, small: int = 256, target: int = 4096) -> int:
        """Rewrite series with ``>= min_chunks`` chunks of ``< small`` points on average (a flush
        per step) in chunks of ``target`` points (one huge blob reads slower); returns #series."""
        self.flush()
        db = self._db()
        ids = [r[0] for r in db.execute(
            "SELECT name_id FROM scalars GROUP BY name_id HAVING COUNT(*) >= ? AND AVG(n) < ?",
            (int(min_chunks), float(small)))]
        for nid in ids:
            with _transaction(db):
                rows = db.execute("SELECT steps, vals FROM scalars WHERE name_id=? ORDER BY seq",
                                  (nid,)).fetchall()
                steps, vals = unpack_chunks(rows)
                db.execute("DELETE FROM scalars WHERE name_id=?", (nid,))
                self._insert_chunks(nid, steps, vals, target)
        return len(ids)

    def _insert_chunks(self, nid: int, steps: np.ndarray, vals: np.ndarray, target: int) -> None:
        """Insert a series' points as chunks of ``target`` points (inside a transaction)."""
        for i in range(0, len(steps), target):
            self._seq += 1
            self._db().execute("INSERT INTO scalars(name_id, seq, step_min, step_max, n, steps, vals) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               (nid, self._seq, *pack_chunk(steps[i:i + target], vals[i:i + target])))

    def log_series(self, name: str, steps: Any, values: Any, target: int = 4096) -> None:
        """Write a whole series at once (importers): one transaction, chunks of ``target`` points;
        same semantics as calling ``log_scalars`` per step (the last value of a step wins).

        Example:
            >>> import tempfile
            >>> with TraceWriter(tempfile.mkdtemp()) as w:
            ...     w.log_series("val/acc", [0, 10, 10], [0.1, 0.5, 0.9])
        """
        if not isinstance(name, str) or not name:
            raise ValueError(f"scalar name must be a non-empty str, got {name!r}")
        st, vals = check_steps(steps), np.asarray(values, dtype=np.float64)
        if st.shape != vals.shape:
            raise ValueError(f"series {name!r}: {len(st)} steps but values of shape {vals.shape}")
        if not len(st):
            return
        order = np.argsort(st, kind="stable")  # ties keep write order: the last one wins
        self._begin_step(int(st[order[0]]))
        self.flush()
        nid = self._name_id(name)
        with _transaction(self._db()):
            self._insert_chunks(nid, st[order], vals[order], target)

    def _make_self_contained(self) -> None:
        """Fold the WAL into ``trace.sqlite`` (TRUNCATE checkpoint: waits for readers' current
        reads, ``timeout``) and, when no reader is connected, leave WAL mode, so the file alone
        holds every row even if readers were open and can be read from read-only media."""
        db = self._db()
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        try:
            db.execute("PRAGMA journal_mode=DELETE")
        except sqlite3.OperationalError:  # a reader is connected: the checkpoint already did it
            pass

    def close(self) -> None:
        """Flush, compact series with many small chunks, fold the WAL into the file, and close;
        closing twice is a no-op."""
        if self._conn is None:
            return
        try:
            self.compact()
            self._make_self_contained()
        finally:
            self._logs.close()
            self._conn.close()
            self._conn = None
            hold(self.path, -1)
            self._lock.release()


def _json_default(obj: Any) -> Any:  # numpy scalars/arrays, sets; anything else as str
    return obj.tolist() if hasattr(obj, "tolist") else sorted(obj, key=str) if isinstance(obj, set) else str(obj)

# The reader lives in store_read.py (size); re-exported so `from .store import load_run` works.
from .store_read import RunTrace, hold, load_run  # noqa: E402,F401

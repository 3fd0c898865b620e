"""Read a run directory's trace store (read-only; safe while a training process is writing).

Example:
    >>> from phasewatch.analysis import load_run
    >>> run = load_run("runs/latest")                        # doctest: +SKIP
    >>> steps, values = run.series("val/acc")                # doctest: +SKIP
    >>> steps.dtype, values.dtype                            # doctest: +SKIP
    (dtype('int64'), dtype('float64'))
"""
from __future__ import annotations

import difflib
import json
import os
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from .arraylog import ARRAYS_DIR, read_payloads
from .store import REQUIRED_TABLES, SCHEMA_VERSION, TRACE_FILE, TraceStoreError, unpack_chunks

__all__ = ["RunTrace", "load_run"]

_SQLITE_MAGIC = b"SQLite format 3\x00"


def load_run(path: str | os.PathLike) -> "RunTrace":
    """Open the trace store of run directory ``path`` (or of the ``trace.sqlite`` file itself)."""
    return RunTrace(path)


# trace.sqlite files this process has SQLite connections on (path -> count). Closing ANY
# descriptor of a file drops every POSIX lock the process holds on it, SQLite's included; another
# process's connection then takes the WAL for abandoned and deletes it on close, and every later
# commit of this process's writer goes to the deleted file (seen: a PhaseMonitor read during a
# run, then a shell's `sqlite3 trace.sqlite`: all rows after it were lost). So while SQLite holds
# a file here, it is never opened outside SQLite.
_HELD: Counter = Counter()


def _held_key(db) -> str:
    return str(Path(db).resolve())


def hold(db: Path, delta: int) -> None:
    """Count a SQLite connection of this process on ``db`` opened (+1) or closed (-1)."""
    key = _held_key(db)
    _HELD[key] += delta
    if _HELD[key] <= 0:
        del _HELD[key]


def _check_file(db: Path, tries: int = 3) -> None:
    """Header checks that SQLite itself may only report later (or never): garbage, truncation.

    The size check is skipped while a non-empty ``-wal`` exists (a live or killed writer: pages
    may sit in the WAL, and a checkpoint writes the new header before it extends the file), and
    repeated briefly before calling a file truncated. Skipped entirely while this process has a
    SQLite connection on the file (see ``_HELD``): that connection's open checked it.
    """
    if _held_key(db) in _HELD:
        return
    wal = db.with_name(db.name + "-wal")
    live = wal.exists() and wal.stat().st_size > 0
    size = db.stat().st_size
    with open(db, "rb") as f:
        header = f.read(100)
    if size == 0 or len(header) < 100 or header[:16] != _SQLITE_MAGIC:
        raise TraceStoreError(f"{db}: not a SQLite trace store (bad header, {size} bytes); "
                              "the file is corrupt or not written by phasewatch - move it away")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    n_pages = int.from_bytes(header[28:32], "big")
    valid = header[24:28] == header[92:96]  # in-header size is valid for this change counter
    if live:
        return
    if page_size == 0 or size % page_size or (valid and n_pages * page_size > size):
        if tries > 1:
            time.sleep(0.05)
            return _check_file(db, tries - 1)
        raise TraceStoreError(f"{db}: truncated SQLite file ({size} bytes, header expects "
                              f"{n_pages * page_size}); restore it from a copy or re-run")


def _connect_ro(db: Path) -> sqlite3.Connection:
    """A read-only connection that never writes next to ``db`` (``mode=ro``). On read-only
    media where SQLite cannot create the ``-shm`` of a WAL store, ``immutable=1`` (no locks,
    no ``-shm``) when no unread WAL content exists; otherwise a clear error."""
    base = "file:" + quote(str(db.resolve())) + "?mode=ro"
    conn = sqlite3.connect(base, uri=True, timeout=30.0, check_same_thread=False)
    try:
        conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError:
        conn.close()
        if os.access(db.parent, os.W_OK):
            raise
    wal = db.with_name(db.name + "-wal")
    if wal.exists() and wal.stat().st_size:
        raise TraceStoreError(f"{db}: its newest rows are in {wal.name}, which SQLite cannot read "
                              f"from read-only media without {db.name}-shm; copy the run "
                              "directory to a writable disk and read it there")
    return sqlite3.connect(base + "&immutable=1", uri=True, check_same_thread=False)


def _access_problem(db: Path, error: Exception) -> bool:
    """True when ``error`` comes from permissions / locks, not from the file's content."""
    text = str(error).lower()
    return (not os.access(db, os.R_OK) or "unable to open" in text or "locked" in text
            or "readonly" in text or "read-only" in text)


def _json_or_text(text: str) -> Any:
    """A meta value: JSON-decoded, or the raw text when it is not JSON (a foreign writer)."""
    try:
        return json.loads(text)
    except (TypeError, ValueError, RecursionError):
        return text


class RunTrace:
    """A run's traces: ``names()``, ``series(name)``, ``arrays(name)``, ``array(name, step)``,
    ``array_names()``, ``events()``, ``meta``, ``path`` (the run directory).

    Opened with ``mode=ro``: never blocks or modifies a live writer (WAL readers see the last
    committed flush). Use as a context manager or call ``close()``.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        p = Path(path)
        if p.is_file() and p.name == TRACE_FILE:
            p = p.parent
        self.path = p
        self.db_path = p / TRACE_FILE
        if not p.exists():
            raise TraceStoreError(f"{p}: run directory does not exist; pass a run directory "
                                  f"containing {TRACE_FILE} (e.g. runs/<run_id>)")
        if not self.db_path.is_file():
            raise TraceStoreError(f"{self.db_path}: no trace store in {p}; pass a run directory "
                                  "written by TraceLogger, or create one with `phasewatch import`")
        _check_file(self.db_path)
        self._conn = None
        try:
            self._conn = _connect_ro(self.db_path)
            hold(self.db_path, +1)
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as e:
            self.close()  # a connection opened before the error must not stay counted as held
            if _access_problem(self.db_path, e):
                raise TraceStoreError(f"{self.db_path}: cannot open for reading ({e}); check the "
                                      "file's permissions (the store itself was not judged)") from e
            raise TraceStoreError(f"{self.db_path}: cannot read SQLite file ({e}); it is corrupt "
                                  "or not a trace store - move it away or restore a copy") from e
        missing = [t for t in REQUIRED_TABLES if t not in tables]
        if missing:
            self.close()
            raise TraceStoreError(f"{self.db_path}: missing table(s) {missing}; not a complete "
                                  "phasewatch trace store - re-create it (e.g. `phasewatch import`)")
        version = self.meta.get("schema_version")
        if version != SCHEMA_VERSION:
            self.close()
            hint = ("written by a newer phasewatch: upgrade phasewatch"
                    if isinstance(version, int) and version > SCHEMA_VERSION
                    else "written by an older phasewatch (an .npz file per array payload): "
                    "read it with that version or re-run" if version == 1
                    else "unknown schema: not readable by this phasewatch")
            raise TraceStoreError(f"{self.db_path}: schema_version {version!r} (this phasewatch "
                                  f"reads {SCHEMA_VERSION}); {hint}")

    def _q(self, sql: str, args: tuple = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, args).fetchall()
        except sqlite3.DatabaseError as e:
            raise TraceStoreError(f"{self.db_path}: read failed ({e}); the file may be corrupt "
                                  "- restore a copy or re-run") from e

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            hold(self.db_path, -1)

    def __enter__(self) -> "RunTrace":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunTrace({str(self.path)!r})"

    @property
    def meta(self) -> dict[str, Any]:
        """All meta values (JSON-decoded), e.g. ``schema_version``, ``hparams``, ``status``."""
        return {str(k): _json_or_text(v) for k, v in self._q("SELECT key, value FROM meta")}

    def names(self) -> list[str]:
        """Scalar series names that have at least one value, sorted."""
        return [r[0] for r in self._q(
            "SELECT name FROM names n WHERE EXISTS (SELECT 1 FROM scalars s WHERE s.name_id = n.id) "
            "ORDER BY name")]

    def _unknown(self, kind: str, name: str, known: list[str]) -> TraceStoreError:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
        hint = f"close names: {close}" if close else f"known: {known[:20]}"
        return TraceStoreError(f"{self.db_path}: unknown {kind} {name!r}; {hint}")

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps int64, values float64)`` of scalar ``name``, sorted by step, NaN/inf kept."""
        row = self._q("SELECT id FROM names WHERE name=?", (name,))
        if not row:
            raise self._unknown("series", name, self.names())
        rows = self._q("SELECT steps, vals FROM scalars WHERE name_id=? ORDER BY seq", (row[0][0],))
        if not rows:
            raise self._unknown("series", name, self.names())
        try:
            steps, values = unpack_chunks(rows)
            if len(steps) != len(values):
                raise ValueError(f"{len(steps)} steps but {len(values)} values")
        except (ValueError, TypeError) as e:
            raise TraceStoreError(f"{self.db_path}: series {name!r} has malformed chunks ({e}); "
                                  "the file was edited or damaged - restore a copy or re-run") from e
        return steps, values

    def array_names(self) -> list[str]:
        return [r[0] for r in self._q("SELECT DISTINCT name FROM arrays ORDER BY name")]

    def array_steps(self, name: str) -> np.ndarray:
        rows = self._q("SELECT step FROM arrays WHERE name=? ORDER BY step", (name,))
        if not rows:
            raise self._unknown("array", name, self.array_names())
        return np.array([r[0] for r in rows], dtype=np.int64)

    def _load(self, relpath: str, rows: list[tuple[int, int, str, str]]) -> list[np.ndarray]:
        f = self._confined(relpath)
        try:
            return read_payloads(f, rows)
        except (OSError, ValueError, MemoryError) as e:
            raise TraceStoreError(f"{f}: cannot read array payload ({e}); re-run or remove its row") from e

    def _confined(self, relpath: Any) -> Path:
        """``run dir / relpath``, refused unless it resolves inside ``<run dir>/arrays``."""
        root = (self.path / ARRAYS_DIR).resolve()
        f = (self.path / str(relpath)).resolve()
        if not isinstance(relpath, str) or f.parent != root:
            raise TraceStoreError(f"{self.db_path}: array path {str(relpath)[:120]!r} points outside "
                                  f"{root}; the store was edited or crafted - not read")
        return f

    def backup(self, dest: str | os.PathLike) -> Path:
        """Copy the store to the file ``dest`` with SQLite's backup API (a consistent snapshot,
        WAL folded in, even while a writer runs); returns ``dest``."""
        dest = Path(dest)
        out = sqlite3.connect(str(dest))
        try:
            self._conn.backup(out)
        finally:
            out.close()
        return dest

    def array(self, name: str, step: int) -> np.ndarray:
        """The array ``name`` logged at ``step``."""
        row = self._q("SELECT relpath, offset, nbytes, shape, dtype FROM arrays "
                      "WHERE name=? AND step=?", (name, int(step)))
        if not row:
            steps = self.array_steps(name)  # raises for an unknown name
            raise TraceStoreError(f"{self.db_path}: array {name!r} has no step {step}; "
                                  f"steps {steps[:10].tolist()}{'...' if len(steps) > 10 else ''}")
        return self._load(row[0][0], [row[0][1:]])[0]

    def arrays(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps int64, stacked [n_steps, ...])``; all payloads of ``name`` must share a shape."""
        rows = self._q("SELECT step, relpath, offset, nbytes, shape, dtype FROM arrays "
                       "WHERE name=? ORDER BY step", (name,))
        if not rows:
            raise self._unknown("array", name, self.array_names())
        shapes = {r[4] for r in rows}
        if len(shapes) > 1:
            raise TraceStoreError(f"{self.db_path}: array {name!r} has several shapes {sorted(shapes)}; "
                                  "read them one by one with array(name, step)")
        steps = np.array([r[0] for r in rows], dtype=np.int64)
        payloads = self._load(rows[0][1], [r[2:] for r in rows])  # one log per name
        return steps, np.stack(payloads)

    def events(self) -> list[dict[str, Any]]:
        """Logged events as ``{"name", "step", "signal", "payload"}`` dicts sorted by step."""
        return [{"name": n, "step": s, "signal": sig or None, "payload": _json_or_text(p)}
                for s, n, sig, p in self._q(
                    "SELECT step, name, signal, payload FROM events ORDER BY step, id")]


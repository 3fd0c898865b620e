"""The state of a sweep: one SQLite table in ``SWEEP_DIR/sweep.sqlite``, written by the driver only.

A trial is identified by its parameters (canonical JSON), so a spec that grows (another seed,
another grid value) keeps the ids, run directories and results of the trials it already had.
Statuses: ``pending`` (never started or to be retried), ``running``, ``done``, ``failed``
(out of retries in the last invocation; a new invocation tries it again).

Example:
    >>> import tempfile
    >>> st = SweepState(tempfile.mkdtemp())
    >>> st.add_trials([{"model.lr": 0.1, "seed": 0}, {"model.lr": 0.1, "seed": 1}])
    ['t000', 't001']
    >>> st.mark("t000", "done", run_dir="t000/run-1", run_class="grokking")
    >>> [t.status for t in st.trials()]
    ['done', 'pending']
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["STATE_FILE", "Trial", "SweepState", "is_sweep_dir"]

STATE_FILE = "sweep.sqlite"
STATUSES = ("pending", "running", "done", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    id TEXT PRIMARY KEY, params TEXT UNIQUE NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, error TEXT, run_dir TEXT, run_class TEXT,
    started REAL, finished REAL);
CREATE TABLE IF NOT EXISTS sweep (key TEXT PRIMARY KEY, value TEXT);
"""


@dataclass(frozen=True)
class Trial:
    """One row of the table; ``params`` maps dotted config keys to values."""

    id: str
    params: dict
    status: str
    attempts: int
    error: Optional[str]
    run_dir: Optional[str]
    run_class: Optional[str]
    started: Optional[float]
    finished: Optional[float]


def _canonical(params: dict) -> str:
    return json.dumps(params, sort_keys=True, default=str)


def is_sweep_dir(path) -> bool:
    """Whether ``path`` holds a sweep's state file."""
    return os.path.isfile(os.path.join(str(path), STATE_FILE))


class SweepState:
    """Open (creating if needed) the state of the sweep in ``sweep_dir``."""

    def __init__(self, sweep_dir) -> None:
        os.makedirs(str(sweep_dir), exist_ok=True)
        self.dir = str(sweep_dir)
        self._db = sqlite3.connect(os.path.join(self.dir, STATE_FILE), timeout=30,
                                   isolation_level=None)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def set_info(self, key: str, value: Any) -> None:
        self._db.execute("INSERT OR REPLACE INTO sweep VALUES (?, ?)", (key, json.dumps(value)))

    def info(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM sweep WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    def add_trials(self, params_list: list[dict]) -> list[str]:
        """Ids of the trials with these parameters, adding the ones not yet in the table."""
        known = dict(self._db.execute("SELECT params, id FROM trials"))
        n = len(known)
        ids = []
        with self._db:
            for params in params_list:
                key = _canonical(params)
                if key not in known:
                    known[key] = f"t{n:03d}"
                    n += 1
                    self._db.execute("INSERT INTO trials (id, params) VALUES (?, ?)", (known[key], key))
                ids.append(known[key])
        return ids

    def trials(self, ids: Optional[list[str]] = None) -> list[Trial]:
        """All trials (or those in ``ids``) in id order."""
        rows = self._db.execute("SELECT id, params, status, attempts, error, run_dir, run_class, "
                                "started, finished FROM trials ORDER BY id").fetchall()
        out = [Trial(r[0], json.loads(r[1]), *r[2:]) for r in rows]
        return out if ids is None else [t for t in out if t.id in set(ids)]

    def mark(self, trial_id: str, status: str, *, error: Optional[str] = None,
             run_dir: Optional[str] = None, run_class: Optional[str] = None,
             new_attempt: bool = False) -> None:
        """Set a trial's status (and error / run dir / class when given); ``new_attempt``
        counts an attempt and stamps its start."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        now = time.time()
        sets = ["status = ?"]
        args: list[Any] = [status]
        if new_attempt:
            sets += ["attempts = attempts + 1", "started = ?", "finished = NULL"]
            args.append(now)
        if status in ("done", "failed"):
            sets.append("finished = ?")
            args.append(now)
        for col, val in (("error", error), ("run_dir", run_dir), ("run_class", run_class)):
            if val is not None:
                sets.append(f"{col} = ?")
                args.append(val)
        with self._db:
            self._db.execute(f"UPDATE trials SET {', '.join(sets)} WHERE id = ?", (*args, trial_id))

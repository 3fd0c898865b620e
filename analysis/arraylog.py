"""Append-only array logs: every payload of one array name in one file of the run directory.

``RUN/arrays/<quoted name>.bin`` holds the raw bytes (C order, the dtype's own byte order) of
each array logged under that name, back to back; the trace store's ``arrays`` index gives each
payload's step, offset, byte count, shape and dtype. Writing a payload is one buffered append
(a file per payload cost ~1 ms on this machine's disk: open, write, rename), and reading all the
evaluations of a name opens one file (``scripts/bench_store.py`` measures both).

Crash safety: the writer pushes appended bytes to the OS (``sync``) before it commits the index
rows that point at them, so a killed process leaves at most an unreferenced tail;
``truncate_to_index`` (run by a superseding session, see ``store``) cuts it off.
One writer appends to a log at a time: it holds an exclusive ``flock`` on each log it has open,
so a second writer of the same array names gets a clear error instead of interleaved offsets,
and trimming skips logs another writer holds.

Example:
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> logs = ArrayLogs(d)
    >>> rel, offset, nbytes = logs.append("examples/train/correct", np.ones(4, np.uint8))
    >>> rel, offset, nbytes
    ('arrays/examples%2Ftrain%2Fcorrect.bin', 0, 4)
    >>> logs.close()
    >>> read_payloads(Path(d) / rel, [(offset, nbytes, "[4]", "|u1")])[0].tolist()
    [1, 1, 1, 1]
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any, BinaryIO, Iterable
from urllib.parse import quote

import numpy as np

__all__ = ["ARRAYS_DIR", "ArrayLogs", "array_log_relpath", "read_payloads"]

ARRAYS_DIR = "arrays"
_SUFFIX = ".bin"


def array_log_relpath(name: str) -> str:
    """Path of the log of array ``name``, relative to the run directory."""
    return f"{ARRAYS_DIR}/{quote(name, safe='')}{_SUFFIX}"


class ArrayLogs:
    """The open array logs of one writer (one append handle per name)."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        (self.run_dir / ARRAYS_DIR).mkdir(parents=True, exist_ok=True)
        self._files: dict[str, BinaryIO] = {}

    def append(self, name: str, array: np.ndarray) -> tuple[str, int, int]:
        """Append ``array``'s bytes to the log of ``name``; returns ``(relpath, offset, nbytes)``."""
        rel = array_log_relpath(name)
        f = self._files.get(rel)
        if f is None:
            f = open(self.run_dir / rel, "ab")
            if not _try_lock(f):
                f.close()
                raise ValueError(f"{self.run_dir / rel}: another writer is appending to this array "
                                 "log; a run's arrays have one writer (the training process)")
            self._files[rel] = f
        offset = f.tell()  # append mode: the end of the file
        data = np.ascontiguousarray(array)
        f.write(data.tobytes())
        return rel, offset, data.nbytes

    def sync(self) -> None:
        """Hand every appended byte to the OS (call before committing the index rows)."""
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files = {}

    def truncate_to_index(self, ends: dict[str, int]) -> None:
        """Cut each log to the end of its last indexed payload (``ends``: relpath -> byte end;
        a log with no indexed payload is removed)."""
        self.close()
        for path in (self.run_dir / ARRAYS_DIR).glob(f"*{_SUFFIX}"):
            end = ends.get(f"{ARRAYS_DIR}/{path.name}")
            with open(path, "r+b") as f:
                if not _try_lock(f):  # another writer's live log: its tail is not ours to cut
                    continue
                if end is None:
                    path.unlink()
                elif os.fstat(f.fileno()).st_size > end:
                    f.truncate(end)


def _try_lock(f: BinaryIO) -> bool:
    """Take an exclusive lock on ``f`` (released when it is closed); False if another holds it."""
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_payloads(path: Path, rows: Iterable[tuple[int, int, str, str]]) -> list[np.ndarray]:
    """The arrays at ``(offset, nbytes, shape json, dtype str)`` rows of the log at ``path``.

    Raises ``OSError`` / ``ValueError`` naming ``path`` when a payload is missing or short.
    """
    out: list[np.ndarray] = []
    with open(path, "rb") as f:
        for offset, nbytes, shape, dtype in rows:
            arr = np.empty(_shape(shape), dtype=np.dtype(dtype))
            if arr.nbytes != nbytes:
                raise ValueError(f"{path}: index says {nbytes} bytes at byte {offset} for "
                                 f"shape {shape} {dtype} ({arr.nbytes} bytes)")
            f.seek(offset)
            got = f.readinto(arr.reshape(-1).view(np.uint8)) if nbytes else 0
            if got != nbytes:
                raise ValueError(f"{path}: payload at byte {offset} has {got} of {nbytes} "
                                 "bytes (file truncated?)")
            out.append(arr)
    return out


def _shape(shape: Any) -> tuple[int, ...]:
    return tuple(json.loads(shape) if isinstance(shape, str) else shape)

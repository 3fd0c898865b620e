"""Append-only array logs: every payload of one array name in one file of the run directory.

``RUN/arrays/<quoted name>.bin`` holds the raw bytes (C order, the dtype's own byte order) of
each array logged under that name, back to back; the trace store's ``arrays`` index gives each
payload's step, offset, byte count, shape and dtype. Writing a payload is one buffered append
(a file per payload cost ~1 ms on this machine's disk: open, write, rename), and reading all the
evaluations of a name opens one file (``scripts/bench_store.py`` measures both).

Crash safety: the writer pushes appended bytes to the OS (``sync``) before it commits the index
rows that point at them, so a killed process leaves at most an unreferenced tail;
``truncate_to_index`` (run by a superseding session, see ``store``) cuts it off.
One writer appends to a log at a time: the trace store's writer holds the run directory's lock
(``runlock``), so offsets never interleave and trimming never cuts a live writer's tail.

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

import json
import math
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
        # Each log's end, kept here: ``f.tell()`` races with ``sync()``'s flush on the store's
        # writer thread (it can count the buffered bytes twice and hand out the next payload's
        # offset). Only the training thread appends, so this counter needs no lock.
        self._ends: dict[str, int] = {}

    def append(self, name: str, array: np.ndarray) -> tuple[str, int, int]:
        """Append ``array``'s bytes to the log of ``name``; returns ``(relpath, offset, nbytes)``."""
        rel = array_log_relpath(name)
        f = self._files.get(rel)
        if f is None:
            f = self._files[rel] = open(self.run_dir / rel, "ab")
            self._ends[rel] = f.tell()  # append mode, nothing written yet: the file's size
        offset = self._ends[rel]
        data = np.ascontiguousarray(array)
        f.write(data.tobytes())
        self._ends[rel] = offset + data.nbytes
        return rel, offset, data.nbytes

    def sync(self) -> None:
        """Hand every appended byte to the OS (call before committing the index rows)."""
        for f in list(self._files.values()):  # a copy: the training thread may open a log meanwhile
            f.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files, self._ends = {}, {}

    def truncate_to_index(self, ends: dict[str, int]) -> None:
        """Cut each log to the end of its last indexed payload (``ends``: relpath -> byte end;
        a log with no indexed payload is removed)."""
        self.close()
        for path in (self.run_dir / ARRAYS_DIR).glob(f"*{_SUFFIX}"):
            end = ends.get(f"{ARRAYS_DIR}/{path.name}")
            if end is None:
                path.unlink()
            elif path.stat().st_size > end:
                os.truncate(path, end)


def read_payloads(path: Path, rows: Iterable[tuple[int, int, str, str]]) -> list[np.ndarray]:
    """The arrays at ``(offset, nbytes, shape json, dtype str)`` rows of the log at ``path``.

    Every row is checked against the file before anything is allocated (a crafted index can
    claim any shape or dtype). Raises ``OSError`` / ``ValueError`` naming ``path`` when a
    payload is missing, short or its index row is malformed.
    """
    out: list[np.ndarray] = []
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        for offset, nbytes, shape, dtype in rows:
            shape_t, dt = _shape(shape, path), _dtype(dtype, path)
            if not (isinstance(offset, int) and isinstance(nbytes, int) and offset >= 0
                    and nbytes >= 0):
                raise ValueError(f"{path}: index row has offset {offset!r}, nbytes {nbytes!r}")
            expected = math.prod(shape_t) * dt.itemsize
            if expected != nbytes:
                raise ValueError(f"{path}: index says {nbytes} bytes at byte {offset} for "
                                 f"shape {shape} {dtype} ({expected} bytes)")
            if offset + nbytes > size:
                raise ValueError(f"{path}: payload at byte {offset} has "
                                 f"{max(0, size - offset)} of {nbytes} bytes (file truncated?)")
            arr = np.empty(shape_t, dtype=dt)
            f.seek(offset)
            got = f.readinto(arr.reshape(-1).view(np.uint8)) if nbytes else 0
            if got != nbytes:
                raise ValueError(f"{path}: payload at byte {offset} has {got} of {nbytes} "
                                 "bytes (file truncated?)")
            out.append(arr)
    return out


def _shape(shape: Any, path: Path) -> tuple[int, ...]:
    try:
        dims = json.loads(shape) if isinstance(shape, str) else shape
        if isinstance(dims, list) and all(type(d) is int and 0 <= d < 2**62 for d in dims) \
                and len(dims) <= 32:
            return tuple(dims)
    except (TypeError, ValueError, RecursionError):
        pass
    raise ValueError(f"{path}: index row has an invalid shape {str(shape)[:80]!r}")


def _dtype(dtype: Any, path: Path) -> np.dtype:
    try:
        dt = np.dtype(str(dtype))
    except (TypeError, ValueError, SyntaxError):
        dt = None
    if dt is None or dt.kind not in "biufcSU" or dt.itemsize == 0:
        raise ValueError(f"{path}: index row has an invalid dtype {str(dtype)[:80]!r}")
    return dt

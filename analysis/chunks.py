"""Scalar chunks of the trace store and the checks of the steps they hold (torch-free).

A ``scalars`` row holds one series' points of one flush as two blobs: little-endian int64 steps
and float64 values (NaN / inf bit-exact). Steps are integers in ``[0, MAX_STEP]``.

Example:
    >>> lo, hi, n, sb, vb = pack_chunk([0, 10, 10], [0.1, 0.5, 0.9])
    >>> unpack_chunks([(sb, vb)])[1].tolist()          # the last write of a step wins
    [0.1, 0.9]
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["MAX_STEP", "pack_chunk", "unpack_chunks", "check_step", "check_steps"]

MAX_STEP = 2**63 - 1  # steps are SQLite / numpy int64


def pack_chunk(steps: Any, values: Any) -> tuple[int, int, int, bytes, bytes]:
    """``(step_min, step_max, n, steps_blob, vals_blob)`` of one scalars row."""
    s = np.ascontiguousarray(steps, dtype="<i8")
    v = np.ascontiguousarray(values, dtype="<f8")
    return int(s.min()), int(s.max()), len(s), s.tobytes(), v.tobytes()


def unpack_chunks(rows: list[tuple[bytes, bytes]]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate chunk blobs (in write order) into ``(steps, values)`` sorted by step with one
    value per step: the last write of a step wins."""
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    steps = np.concatenate([np.frombuffer(r[0], dtype="<i8") for r in rows]).astype(np.int64)
    vals = np.concatenate([np.frombuffer(r[1], dtype="<f8") for r in rows]).astype(np.float64)
    if len(steps) > 1 and not bool(np.all(steps[1:] > steps[:-1])):
        order = np.argsort(steps, kind="stable")  # ties stay in write order
        steps, vals = steps[order], vals[order]
        last = np.r_[steps[1:] != steps[:-1], True]
        steps, vals = steps[last], vals[last]
    return steps, vals


def check_step(step: Any) -> int:
    """``step`` as an int in ``[0, MAX_STEP]``; ValueError naming the value otherwise (bool,
    fraction, nan, inf, negative, 1e30)."""
    try:
        ok = not isinstance(step, bool) and float(step).is_integer() and 0 <= int(step) <= MAX_STEP
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"step must be an integer in [0, 2**63-1], got {step!r}")
    return int(step)


def check_steps(steps: Any) -> np.ndarray:
    """A 1-d array of steps as int64, every one checked like ``check_step`` (vectorized)."""
    arr = np.asarray(steps)
    if arr.ndim != 1:
        raise ValueError(f"steps must be 1-d, got shape {arr.shape}")
    if arr.dtype.kind in "iub":
        bad = arr < 0 if arr.dtype.kind == "i" else arr > MAX_STEP if arr.dtype.kind == "u" \
            else np.zeros(arr.shape, bool)
    elif arr.dtype.kind != "f":
        raise ValueError(f"step must be an integer in [0, 2**63-1], got {arr.dtype} values")
    else:
        bad = ~((arr >= 0) & (arr < 2.0**63) & (np.floor(arr) == arr))
    if bad.any():
        check_step(arr[np.argmax(bad)].item())  # raises, naming the first bad step
    return arr.astype(np.int64)

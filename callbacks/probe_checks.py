"""What crosses a probe's failure boundary: its result and its persistent state.

``check_result(res)`` turns a probe's ``ProbeResult`` into plain, loggable values or raises
``ValueError`` naming the bad entry: a scalar must be a finite real number (or a 0-d / 1-element
real tensor or array), an array numeric or bool, a meta value JSON-serializable.

``pack_state`` / ``unpack_state`` make a probe's ``state`` dict safe for a checkpoint that is
loaded with ``torch.load(weights_only=True)``: numpy arrays travel as tensors under a marker
key and numpy scalars as Python numbers; ``pack_state`` raises ``ValueError`` for anything
such a load would refuse (it round-trips the packed state through ``torch.save`` / ``load``).

Example:
    >>> import numpy as np
    >>> state = {"seen": np.arange(3), "n": np.int64(2)}
    >>> unpack_state(pack_state(state))["seen"].tolist()
    [0, 1, 2]
"""
from __future__ import annotations

import io
import json
import math
from typing import Any

import numpy as np
import torch

__all__ = ["check_result", "pack_state", "unpack_state"]

_NDARRAY = "__phasewatch_ndarray__"


def _scalar(name: str, value: Any) -> float:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise ValueError(f"scalar {name!r} has shape {value.shape}; log it as an array")
        value = value.reshape(()).item()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"scalar {name!r} must be a real number, got {type(value).__name__} {value!r:.60}")
    if not math.isfinite(value):
        raise ValueError(f"scalar {name!r} is {value}; a probe scalar must be finite")
    return float(value)


def _array(name: str, value: Any) -> np.ndarray:
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"array {name!r} has dtype {arr.dtype}; probe arrays must be numeric or bool")
    return arr


def _json_numpy(obj: Any) -> Any:
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON-serializable")


def check_result(res: Any) -> tuple[dict[str, float], dict[str, np.ndarray], dict[str, Any]]:
    """``(scalars, arrays, meta)`` of a probe result, checked (see the module docstring)."""
    parts = []
    for label in ("scalars", "arrays", "meta"):
        part = getattr(res, label)
        if not isinstance(part, dict) or not all(isinstance(k, str) and k for k in part):
            raise ValueError(f"ProbeResult.{label} must be a dict with non-empty str keys")
        parts.append(part)
    scalars = {k: _scalar(k, v) for k, v in parts[0].items()}
    arrays = {k: _array(k, v) for k, v in parts[1].items()}
    for k, v in parts[2].items():
        try:
            json.dumps(v, default=_json_numpy, allow_nan=True)
        except (TypeError, ValueError, RecursionError) as e:
            raise ValueError(f"meta {k!r} is not JSON-serializable ({e})") from None
    return scalars, arrays, parts[2]


def _pack(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biufc":
            raise ValueError(f"a numpy array of dtype {obj.dtype} cannot be checkpointed safely")
        return {_NDARRAY: torch.from_numpy(np.ascontiguousarray(obj).copy())}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _pack(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v) for v in obj)
    return obj


def pack_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` in a form ``torch.load(weights_only=True)`` restores; ValueError otherwise."""
    packed = _pack(state)
    buf = io.BytesIO()
    try:
        torch.save(packed, buf)
        buf.seek(0)
        torch.load(buf, weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickling errors come in many types
        raise ValueError(f"state cannot be checkpointed ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    return packed


def unpack_state(obj: Any) -> Any:
    """Inverse of ``pack_state``: marked tensors back to numpy arrays."""
    if isinstance(obj, dict):
        if set(obj) == {_NDARRAY}:
            return obj[_NDARRAY].numpy()
        return {k: unpack_state(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(unpack_state(v) for v in obj)
    return obj

"""Cleaning and elementary operations on one ``(steps, values)`` trace.

All analysis functions take a pair of 1-D numpy arrays. ``clean`` makes them
safe: sorted by step, one value per step (the LAST logged value wins, as after a
resume), non-finite values dropped (their first step is reported separately).

Example:
    >>> import numpy as np
    >>> s, v, bad = clean(np.array([3, 1, 1, 2]), np.array([0.3, 0.1, 0.15, np.nan]))
    >>> s.tolist(), v.tolist(), bad
    ([1, 3], [0.15, 0.3], 2)
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "clean",
    "first_nonfinite_step",
    "running_median",
    "reach_and_stay",
    "log_bin",
    "log10_step",
    "level_at",
]


def first_nonfinite_step(steps: np.ndarray, values: np.ndarray) -> int | None:
    """First step whose value is NaN or +-inf, or None."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    return int(np.min(np.asarray(steps)[bad]))


def clean(steps, values) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Sort by step, keep the last value per duplicated step, drop non-finite.

    Returns ``(steps int64, values float64, first_nonfinite_step or None)``.
    Raises ValueError when the two arrays differ in length.
    """
    steps = np.asarray(steps).reshape(-1)
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if steps.shape != values.shape:
        raise ValueError(f"steps ({steps.shape[0]}) and values ({values.shape[0]}) differ in length")
    if steps.size == 0:
        return steps.astype(np.int64), values, None
    steps = steps.astype(np.int64, copy=False)
    if np.all(steps[1:] > steps[:-1]):      # fast path: already sorted and unique
        ok = np.isfinite(values)
        if ok.all():
            return steps, values, None
        return steps[ok], values[ok], int(steps[~ok][0])
    # stable sort keeps logging order among equal steps -> last one wins
    order = np.argsort(steps, kind="stable")
    steps, values = steps[order], values[order]
    last = np.ones(steps.size, dtype=bool)
    last[:-1] = steps[1:] != steps[:-1]
    steps, values = steps[last], values[last]
    bad_step = first_nonfinite_step(steps, values)
    ok = np.isfinite(values)
    return steps[ok], values[ok], bad_step


def running_median(values: np.ndarray, window: int = 5) -> np.ndarray:
    """Centered running median over ``window`` samples (edges repeat the end values).

    >>> running_median(np.array([0., 0, 9, 0, 0, 1, 1]), 3).tolist()
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    """
    from scipy.ndimage import median_filter

    values = np.asarray(values, dtype=np.float64)
    if window <= 1 or values.size < 3:
        return values.copy()
    return median_filter(values, size=min(window, values.size) | 1, mode="nearest")


def reach_and_stay(steps: np.ndarray, values: np.ndarray, threshold: float,
                   hysteresis: float = 0.02, smooth: int = 5,
                   smoothed: np.ndarray | None = None) -> tuple[int, int] | None:
    """Index pair ``(i_prev, i)``: the trace reaches ``threshold`` at sample ``i`` and stays.

    "Stays" tolerates noise: after ``i`` the running median (``smooth`` samples) never
    falls below ``threshold - hysteresis``; ``i`` is the first sample after the last such
    fall where the running median is >= threshold. ``i_prev`` is the sample before ``i``
    (the crossing happened between them). None when the end of the trace is below.

    >>> reach_and_stay(np.arange(6), np.array([0, .2, .995, 1, 1, 1.]), 0.99)
    (1, 2)
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return None
    if smoothed is not None:
        sm = smoothed
    else:
        sm = running_median(values, smooth) if values.size >= smooth else values
    above = sm >= threshold
    if not above[-1] and not (sm[-1] >= threshold - hysteresis and above.any()):
        return None
    fell = np.flatnonzero(sm < threshold - hysteresis)
    start = fell[-1] + 1 if fell.size else 0
    idx = np.flatnonzero(above[start:])
    if idx.size == 0:
        return None
    i = int(start + idx[0])
    return (max(i - 1, 0), i)


def log10_step(steps: np.ndarray) -> np.ndarray:
    """log10 of steps with step 0 mapped to log10(0.5) (a step-0 evaluation is half a step)."""
    s = np.asarray(steps, dtype=np.float64)
    return np.log10(np.where(s > 0, s, 0.5))


def log_bin(steps: np.ndarray, values: np.ndarray, max_points: int = 1500) -> tuple[np.ndarray, np.ndarray]:
    """Down-sample to at most ~``max_points`` by averaging within log-step bins.

    Dense log-spaced early samples are kept; the long linear tail of a 10^6-step run
    is averaged. Returns ``(steps float64 geometric-bin centres, mean values)``.
    """
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=np.float64)
    if steps.size <= max_points:
        return steps.astype(np.float64), values
    x = log10_step(steps)
    edges = np.linspace(x[0], x[-1] + 1e-9, max_points + 1)
    which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, max_points - 1)
    counts = np.bincount(which, minlength=max_points)
    keep = counts > 0
    sx = np.bincount(which, weights=x, minlength=max_points)[keep] / counts[keep]
    sv = np.bincount(which, weights=values, minlength=max_points)[keep] / counts[keep]
    return 10.0 ** sx, sv


def level_at(steps: np.ndarray, values: np.ndarray, step: float, frac: float = 0.05) -> float:
    """Median of the values within +-``frac`` decades of ``step`` (nearest sample if none)."""
    x = log10_step(steps)
    x0 = np.log10(max(step, 0.5))
    sel = np.abs(x - x0) <= frac
    if sel.any():
        return float(np.median(values[sel]))
    return float(values[int(np.argmin(np.abs(x - x0)))])

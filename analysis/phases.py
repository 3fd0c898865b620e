"""Nanda et al. (2023) phases: the raw probe samples segmented, each segment named by its signature.

Rows are the probe steps (where ``circuit/excluded_loss`` is logged). Each progress signal
(``SIGNALS``: excluded and restricted loss, sum of squared weights, train and val loss in
log10; Gini and accuracies as they are) contributes its own sample nearest to a probe step,
when closer than half the gap to the neighbouring probes; otherwise that cell is missing:
no point is interpolated. ``segments.select_segments`` fits straight lines per segment on a
linear or log step axis (the better likelihood wins), picks the number of segments (<= 4)
by BIC with every parameter counted and autocorrelated noise, and
``segments.boundary_intervals`` gives each boundary an interval from the jackknife over
probes (the full analysis redone without each probe) and a block bootstrap of residuals.
``phase_signatures.name_segments`` names a segment only when its signature holds; a
boundary is an event (``memorization_end`` ...) only when it ends a named phase.
docs/science.md#phases-within-a-run has the definitions.

Example:
    >>> from phasewatch.analysis.synthetic_examples import nanda_trace
    >>> t, truth = nanda_trace(seed=0)
    >>> r = nanda_phases_from_trace(t, n_boot=50)
    >>> [p["name"] for p in r["phases"]]
    ['memorization', 'circuit_formation', 'cleanup', None]
"""
from __future__ import annotations

import numpy as np

from .phase_signatures import name_segments, trends
from .segments import boundary_intervals, select_segments
from .signals import clean

__all__ = ["SIGNALS", "REQUIRED", "nanda_phases_from_trace", "probe_matrix"]

SIGNALS = {"circuit/excluded_loss": "log", "circuit/restricted_loss": "log", "weights/sum_sq": "log",
           "circuit/gini": "lin", "train/loss": "log", "val/loss": "log", "train/acc": "lin",
           "val/acc": "lin"}
REQUIRED = ("circuit/excluded_loss", "circuit/restricted_loss")
MIN_SIZE = 3            # probes per segment
MAX_SEGMENTS = 4        # memorization, circuit formation, cleanup, after
MIN_COVER = 0.8         # a signal present at fewer than this share of the probes is skipped
FLOOR = 0.01            # noise scale floor: this share of a signal's range (model misfit)


def _insufficient(why: str) -> dict:
    return {"insufficient": f"insufficient data for Nanda phases: {why}"}


def _align(probes: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` at each probe: the nearest sample closer than half the gap to a neighbouring probe."""
    out = np.full(probes.size, np.nan)
    if s.size == 0:
        return out
    gaps = np.diff(probes.astype(float))
    half = 0.5 * np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
    i = np.clip(np.searchsorted(s, probes), 1, max(s.size - 1, 1))
    left, right = s[i - 1], s[np.minimum(i, s.size - 1)]
    near = np.where(np.abs(probes - left) <= np.abs(right - probes), i - 1, np.minimum(i, s.size - 1))
    dist = np.abs(s[near] - probes)
    ok = (dist == 0) | (dist < half)
    out[ok] = v[near[ok]]
    return out


def _series(trace, name: str, aliases: dict):
    real = aliases.get(name, name)
    if real not in trace.names():
        return None
    s, v, _ = clean(*trace.series(real))
    if SIGNALS[name] == "log":
        v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    return s, v


def probe_matrix(trace, probes: np.ndarray, names: list, aliases: dict | None = None) -> np.ndarray:
    """[n probes, d signals] transformed samples aligned to ``probes`` (NaN: no sample there)."""
    cols = []
    for name in names:
        got = _series(trace, name, aliases or {})
        cols.append(np.full(probes.size, np.nan) if got is None else _align(probes, *got))
    return np.stack(cols, axis=1)


def _axis_x(steps: np.ndarray, axis: str) -> np.ndarray:
    if axis == "linear":
        return steps.astype(float)
    pos = steps[steps > 0]
    return np.log10(steps + (pos[0] if pos.size else 1.0))


def _select(steps, Y, axes, k=None):
    """The best (axis, x, fit) over ``axes`` by penalized likelihood; None if too few probes."""
    floor = FLOOR * np.nan_to_num(np.nanmax(Y, 0) - np.nanmin(Y, 0))
    best = None
    for ax in axes:
        x = _axis_x(steps, ax)
        fit = select_segments(x, Y, MAX_SEGMENTS, MIN_SIZE, k=k, sigma_floor=floor)
        if fit is None:
            continue
        n_j = np.isfinite(Y).sum(0)
        score = float(np.sum(n_j * np.log(fit.sigma ** 2))) + fit.bic[fit.k] - min(fit.bic.values())
        if best is None or score < best[0]:
            best = (score, ax, x, fit)
    return None if best is None else best[1:]


def _midpoint(x: np.ndarray, steps: np.ndarray, pos: float, axis: str) -> float:
    """Step of a boundary position (``i - 0.5``: between rows i-1 and i; integer: at a row)."""
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    if lo == hi:
        return float(steps[lo])
    if axis == "linear":
        return float(steps[lo] + steps[hi]) / 2
    off = steps[steps > 0][0] if np.any(steps > 0) else 1.0
    return float(np.sqrt((steps[lo] + off) * (steps[hi] + off)) - off)


def _bracket(steps: np.ndarray, lo: float, hi: float) -> tuple:
    """Steps of the probes bracketing positions ``lo`` .. ``hi`` (a row position: its neighbours)."""
    a = int(np.floor(lo)) if lo != int(lo) else int(lo) - 1
    b = int(np.ceil(hi)) if hi != int(hi) else int(hi) + 1
    return int(steps[max(a, 0)]), int(steps[min(b, steps.size - 1)])


def nanda_phases_from_trace(trace, generalized: bool = True, val_midpoint: float | None = None,
                            axis: str = "auto", aliases: dict | None = None, n_boot: int = 200,
                            seed: int = 0) -> dict:
    """Nanda phases of a run (reader API); ``{"insufficient": why}`` when the signals cannot carry them.

    ``val_midpoint``: step of the val-accuracy transition midpoint (default: fitted here);
    ``generalized=False`` means the run never generalized: no midpoint, so only memorization
    can be named. ``aliases`` maps a name in ``SIGNALS`` to the run's own series name.
    """
    if axis not in ("auto", "linear", "log"):
        raise ValueError(f"axis must be 'auto', 'linear' or 'log', got {axis!r}")
    aliases = aliases or {}
    names = set(trace.names())
    missing = [n for n in REQUIRED if aliases.get(n, n) not in names]
    if missing:
        return _insufficient(f"no circuit measures ({', '.join(missing)} not logged; they need a "
                             "cross-entropy model with Fourier key frequencies)")
    probes, ex = clean(*trace.series(REQUIRED[0]))[:2]
    rs = _series(trace, REQUIRED[1], aliases)
    if np.nanmax(rs[1]) - np.nanmin(rs[1]) < 1e-3:
        return _insufficient(f"restricted loss constant ({10 ** np.nanmedian(rs[1]):.4g}): "
                             "the key-frequency set K is empty, the measures carry no phase signal")
    used = [n for n in SIGNALS if aliases.get(n, n) in names]
    Y = probe_matrix(trace, probes, used, aliases)
    cover = np.isfinite(Y).mean(0)
    skipped = [n for n, c in zip(used, cover) if c < MIN_COVER]
    used = [n for n, c in zip(used, cover) if c >= MIN_COVER]
    Y = Y[:, cover >= MIN_COVER]
    keep = np.all(np.isfinite(Y[:, :2]), axis=1)
    probes, Y = probes[keep], Y[keep]
    if probes.size < MIN_SIZE * 3:
        return _insufficient(f"{probes.size} probes with circuit measures; need >= {MIN_SIZE * 3}")
    axes = ("linear", "log") if axis == "auto" else (axis,)
    ax, x, fit = _select(probes, Y, axes)

    def refit(mask):
        sub = probes[mask]
        got = _select(sub, probe_matrix(trace, sub, used, aliases), axes)
        return None if got is None else got[2]

    ivs = boundary_intervals(x, Y, fit, refit, n_boot=n_boot, seed=seed, min_size=MIN_SIZE)
    if val_midpoint is None and generalized and "val/acc" in used:
        from .events import fit_transition
        tx = fit_transition(*trace.series(aliases.get("val/acc", "val/acc")), signal="val/acc")
        val_midpoint = None if tx is None else float(tx.midpoint.step)
    if not generalized:
        val_midpoint = None
    bsteps = [_midpoint(x, probes, iv["estimate"], ax) for iv in ivs]
    edges = [0, *fit.starts, probes.size]
    tl = used.index("train/loss") if "train/loss" in used else None
    segs = []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        tr = trends(x, Y, (a, b), fit.sigma, fit.inflation)
        col = Y[a:b, tl] if tl is not None else np.array([])
        col = col[np.isfinite(col)]
        segs.append({"start": float(bsteps[i - 1]) if i else float(probes[0]),
                     "end": float(bsteps[i]) if i < len(bsteps) else float(probes[-1]),
                     "train_loss_end": float(10 ** col[-1]) if col.size else None,
                     "trends": dict(zip(used, tr))})
    first = Y[:, tl][np.isfinite(Y[:, tl])] if tl is not None else np.array([])
    named = name_segments(segs, val_midpoint, float(10 ** first[0]) if first.size else None)
    phases, boundaries = [], []
    for seg, nm in zip(segs, named):
        phases.append({**nm, "start": int(round(seg["start"])), "end": int(round(seg["end"])),
                       "change": {n: None if t["change"] is None else round(t["change"], 3)
                                  for n, t in seg["trends"].items()},
                       "trend": {n: t["trend"] for n, t in seg["trends"].items()}})
    for i, iv in enumerate(ivs):
        lo = min(iv["estimate"], iv["jackknife"][0], iv["bootstrap"][0])
        hi = max(iv["estimate"], iv["jackknife"][1], iv["bootstrap"][1])
        low, high = _bracket(probes, lo, hi)
        name = named[i]["name"]
        boundaries.append({"name": f"{name}_end" if name else None, "step": int(round(bsteps[i])),
                           "low": low, "high": high,
                           "jackknife": list(_bracket(probes, *iv["jackknife"])),
                           "bootstrap": list(_bracket(probes, *iv["bootstrap"]))})
    return {"method": "piecewise-linear segments of the raw probe samples, k <= 4 by BIC",
            "axis": ax, "k": fit.k, "bic": fit.bic, "noise_phi": round(fit.phi, 3),
            "n_probes": int(probes.size), "signals": used, "signals_skipped": skipped,
            "val_midpoint": val_midpoint, "tentative": not generalized,
            "boundaries": boundaries, "phases": phases}

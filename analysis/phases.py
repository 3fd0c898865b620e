"""Nanda et al. (2023) phases: the raw probe samples segmented, each segment named by its signature.

Rows are the probe steps (where ``circuit/excluded_loss`` is logged). Each progress signal
(``SIGNALS``: excluded and restricted loss, sum of squared weights, train and val loss in
log10; Gini and accuracies as they are) contributes its own sample nearest to a probe step,
when closer than half the gap to the neighbouring probes; otherwise that cell is missing:
no point is interpolated. ``segments.select_segments`` fits straight lines per segment on
the log-step axis, picks the number of segments (<= 5) by BIC with every parameter counted
and autocorrelated noise. ``phase_signatures.name_segments`` names a run of segments only
when its signature holds. The whole analysis is redone without each probe (jackknife): a
phase keeps its name only if every leave-one-out analysis names it too, and the interval of
its end covers every leave-one-out position, the bootstrap percentiles
(``segments.bootstrap_positions``) and the two probes that bracket it. A boundary is an
event (``memorization_end`` ...) only when it ends a named phase.
docs/science.md#phases-within-a-run has the definitions.

Example:
    >>> from phasewatch.analysis.synthetic_examples import nanda_trace
    >>> t, truth = nanda_trace(seed=0)
    >>> r = nanda_phases_from_trace(t, n_boot=0, jackknife=False)   # quick: no intervals
    >>> [p["name"] for p in r["phases"]]
    ['memorization', 'circuit_formation', 'cleanup', None]
    >>> [b["step"] for b in r["boundaries"]], round(truth["b2"])     # boundary steps vs a true one
    ([643, 2098, 3795], 2218)
"""
from __future__ import annotations

import functools

import numpy as np

from .phase_signatures import name_segments, trends
from .segments import bootstrap_positions, select_segments
from .signals import clean

__all__ = ["SIGNALS", "REQUIRED", "nanda_phases_from_trace", "probe_matrix"]

SIGNALS = {"circuit/excluded_loss": "log", "circuit/restricted_loss": "log", "weights/sum_sq": "log",
           "circuit/gini": "lin", "train/loss": "log", "val/loss": "log", "train/acc": "lin",
           "val/acc": "lin"}
REQUIRED = ("circuit/excluded_loss", "circuit/restricted_loss")
MIN_SIZE = 3            # probes per segment
MAX_SEGMENTS = 5        # a first transient, memorization, circuit formation, cleanup, after
MIN_COVER = 0.8         # a signal present at fewer than this share of the probes is skipped
FLOOR = 0.01            # noise scale floor: this share of a signal's range (model misfit)
LOSS_FLOOR = 1e-3       # nats: a loss below counts as this (float32 rounding and slingshot spikes live there)
STATUS_KEY = "circuit/progress_measures"   # meta written by the Fourier probe: final / provisional / not_applicable


def _insufficient(why: str) -> dict:
    return {"insufficient": f"insufficient data for Nanda phases: {why}"}


def _align(probes: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``v`` at each probe: the nearest sample closer than half the gap to a neighbouring probe;
    else, for a probe between two consecutive samples that lie no further out than its
    neighbouring probes (evaluations sparser than the probes), their linear interpolation.

    Example:
        >>> _align(np.array([100, 150, 200, 400]), np.array([100, 200, 300]), np.array([1., 3., 5.]))
        array([ 1.,  2.,  3., nan])
    """
    out = np.full(probes.size, np.nan)
    if s.size == 0:
        return out
    p = probes.astype(float)
    gaps = np.diff(p)
    half = 0.5 * np.minimum(np.r_[np.inf, gaps], np.r_[gaps, np.inf])
    i = np.clip(np.searchsorted(s, probes), 1, max(s.size - 1, 1))
    j = np.minimum(i, s.size - 1)  # the sample right of the probe (i - 1: left of it)
    left, right = s[i - 1], s[j]
    near = np.where(np.abs(probes - left) <= np.abs(right - probes), i - 1, j)
    dist = np.abs(s[near] - probes)
    ok = (dist == 0) | (dist < half)
    out[ok] = v[near[ok]]
    prev_probe, next_probe = np.r_[-np.inf, p[:-1]], np.r_[p[1:], np.inf]
    between = (~ok & (left < p) & (p < right) & (left >= prev_probe) & (right <= next_probe))
    w = (p - left) / np.where(right > left, right - left, 1.0)
    out[between] = ((1 - w) * v[i - 1] + w * v[j])[between]
    return out


def _series(trace, name: str, aliases: dict):
    real = aliases.get(name, name)
    if real not in trace.names():
        return None
    s, v, _ = clean(*trace.series(real))
    if SIGNALS[name] == "log":
        if name.endswith("loss"):
            v = np.maximum(v, LOSS_FLOOR)
        v = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    return s, v


def _read_all(trace, names: list, aliases: dict) -> dict:
    """``{name: (steps, transformed values) or None}``: each series read once per analysis."""
    return {name: _series(trace, name, aliases) for name in names}


def _matrix(series: dict, probes: np.ndarray, names: list) -> np.ndarray:
    cols = [np.full(probes.size, np.nan) if series[n] is None else _align(probes, *series[n])
            for n in names]
    return np.stack(cols, axis=1)


def probe_matrix(trace, probes: np.ndarray, names: list, aliases: dict | None = None) -> np.ndarray:
    """[n probes, d signals] transformed samples aligned to ``probes`` (NaN: no sample there)."""
    return _matrix(_read_all(trace, names, aliases or {}), probes, names)


def _axis_x(steps: np.ndarray, axis: str) -> np.ndarray:
    if axis == "linear":
        return steps.astype(float)
    pos = steps[steps > 0]
    return np.log10(steps + (pos[0] if pos.size else 1.0))


def _position_step(steps: np.ndarray, pos: float, axis: str) -> float:
    """Step of a boundary position (``i - 0.5``: between rows i-1 and i, midway on the axis)."""
    lo, hi = int(np.floor(pos)), int(np.ceil(pos))
    if lo == hi:
        return float(steps[lo])
    if axis == "linear":
        return float(steps[lo] + steps[hi]) / 2
    off = steps[steps > 0][0] if np.any(steps > 0) else 1.0
    return float(np.sqrt((steps[lo] + off) * (steps[hi] + off)) - off)


def _bracket(steps: np.ndarray, lo: float, hi: float) -> list:
    """Steps of the probes bracketing positions ``lo`` .. ``hi`` (a row position: its neighbours)."""
    a = int(np.floor(lo)) if lo != int(lo) else int(lo) - 1
    b = int(np.ceil(hi)) if hi != int(hi) else int(hi) + 1
    return [int(steps[max(a, 0)]), int(steps[min(b, steps.size - 1)])]


def _phases_at(series, probes, used, axis, val_midpoint):
    """Segment and name the probes ``probes`` (``series``: ``_read_all``'s): ``(x, Y, fit,
    phases)``, or None if too few.

    ``phases``: ``[{name, expected, failed, first, last, trends, start, end}]``, segments
    ``first``..``last`` (indices into the fit's segments).
    """
    Y = _matrix(series, probes, used)
    x = _axis_x(probes, axis)
    floor = FLOOR * np.nan_to_num(np.nanmax(Y, 0) - np.nanmin(Y, 0))
    fit = select_segments(x, Y, MAX_SEGMENTS, MIN_SIZE, sigma_floor=floor)
    if fit is None:
        return None
    edges = [0, *fit.starts, probes.size]
    bsteps = [_position_step(probes, s - 0.5, axis) for s in fit.starts]
    tl = used.index("train/loss") if "train/loss" in used else None

    @functools.cache  # name_segments asks for a run of segments once per phase it tries
    def union(i, j):
        return dict(zip(used, trends(x, Y, (edges[i], edges[j + 1]), fit.sigma, fit.inflation)))

    segs = []
    for i in range(fit.k):
        col = Y[edges[i]:edges[i + 1], tl] if tl is not None else np.array([])
        col = col[np.isfinite(col)]
        segs.append({"start": bsteps[i - 1] if i else float(probes[0]),
                     "end": bsteps[i] if i < len(bsteps) else float(probes[-1]),
                     "train_loss_end": float(10 ** col[-1]) if col.size else None, "trends": union(i, i)})
    first = Y[:, tl][np.isfinite(Y[:, tl])] if tl is not None else np.array([])
    named = name_segments(segs, val_midpoint, float(10 ** first[0]) if first.size else None, union)
    for nm in named:
        i, j = nm["first"], nm["last"]
        nm.update(trends=segs[i]["trends"] if i == j else union(i, j), start=segs[i]["start"], end=segs[j]["end"])
    return x, Y, fit, named


def _named_ends(fit, named) -> dict:
    """``{"memorization_end": position, ...}`` for each named phase that ends at a boundary."""
    return {f"{nm['name']}_end": fit.starts[nm["last"]] - 0.5 for nm in named
            if nm["name"] and nm["last"] < len(fit.starts)}


def _jackknife(series, probes, used, axis, val_midpoint, named, ends) -> tuple:
    """The whole analysis without each probe: ``({end name: [lo, hi] positions}, {phase: step})``.

    A phase is unstable (second dict: the first probe whose removal loses it) when some
    leave-one-out analysis does not name it or does not end it at a boundary; the positions
    of each named end over all leave-one-out analyses give its jackknife range.
    """
    jack = {name: [pos, pos] for name, pos in ends.items()}
    unstable: dict = {}
    for i in range(probes.size):
        rows = np.delete(np.arange(probes.size), i)
        got = _phases_at(series, probes[rows], used, axis, val_midpoint)
        g_ends = {} if got is None else _named_ends(got[2], got[3])
        g_names = set() if got is None else {nm["name"] for nm in got[3]}
        for nm in named:
            if nm["name"] and nm["name"] not in g_names:
                unstable.setdefault(nm["name"], int(probes[i]))
        for name in ends:
            if name in g_ends:
                pos = (rows[int(g_ends[name] - 0.5)] + rows[int(g_ends[name] + 0.5)]) / 2.0
                jack[name] = [min(jack[name][0], pos), max(jack[name][1], pos)]
            else:
                unstable.setdefault(name[:-4], int(probes[i]))
    return jack, unstable


def nanda_phases_from_trace(trace, generalized: bool = True, val_midpoint: float | None = None,
                            axis: str = "log", aliases: dict | None = None, n_boot: int = 200,
                            seed: int = 0, jackknife: bool = True) -> dict:
    """Nanda phases of a run (reader API); ``{"insufficient": why}`` when the signals cannot carry them.

    ``val_midpoint``: step of the val-accuracy transition midpoint (default: fitted here);
    ``generalized=False`` means the run never generalized: no midpoint, so only memorization
    can be named. ``aliases`` maps a name in ``SIGNALS`` to the run's own series name.
    ``axis``: "log" (log10 of step + first probe step; the default: probes are log-spaced and
    these phases span decades) or "linear". ``jackknife=False`` skips the leave-one-probe-out
    analyses (names are then not checked for stability; intervals come from the bootstrap).
    """
    if axis not in ("linear", "log"):
        raise ValueError(f"axis must be 'linear' or 'log', got {axis!r}")
    aliases = aliases or {}
    names = set(trace.names())
    status = (getattr(trace, "meta", None) or {}).get(STATUS_KEY) or {}
    if isinstance(status, dict) and status.get("status") == "not_applicable":
        return _insufficient(f"progress measures not applicable: {status.get('reason', 'no reason given')}")
    missing = [n for n in REQUIRED if aliases.get(n, n) not in names]
    if missing:
        return _insufficient(f"no circuit measures ({', '.join(missing)} not logged; they need a "
                             "cross-entropy model with Fourier key frequencies)")
    probes = clean(*trace.series(aliases.get(REQUIRED[0], REQUIRED[0])))[0]
    rs = _series(trace, REQUIRED[1], aliases)[1]
    if rs.size and np.nanmax(rs) - np.nanmin(rs) < 1e-3:
        return _insufficient(f"restricted loss constant ({10 ** np.nanmedian(rs):.4g}): "
                             "the key-frequency set K is empty, the measures carry no phase signal")
    used = [n for n in SIGNALS if aliases.get(n, n) in names]
    series = _read_all(trace, used, aliases)
    Y = _matrix(series, probes, used)
    cover = np.isfinite(Y).mean(0)
    skipped = [n for n, c in zip(used, cover) if c < MIN_COVER]
    used = [n for n, c in zip(used, cover) if c >= MIN_COVER]
    probes = probes[np.all(np.isfinite(Y[:, :2]), axis=1)]
    if probes.size < MIN_SIZE * 3:
        return _insufficient(f"{probes.size} probes with circuit measures; need >= {MIN_SIZE * 3}")
    if val_midpoint is None and generalized and "val/acc" in used:
        from .events import fit_transition
        tx = fit_transition(*trace.series(aliases.get("val/acc", "val/acc")), signal="val/acc")
        val_midpoint = None if tx is None else float(tx.midpoint.step)
    if not generalized:
        val_midpoint = None
    x, Y, fit, named = _phases_at(series, probes, used, axis, val_midpoint)
    ends = _named_ends(fit, named)
    jack, unstable = _jackknife(series, probes, used, axis, val_midpoint, named, ends) \
        if jackknife else ({name: [pos, pos] for name, pos in ends.items()}, {})
    boot = bootstrap_positions(x, Y, fit, n_boot=n_boot, seed=seed, min_size=MIN_SIZE)
    phases, boundaries = [], []
    for nm in named:
        if nm["name"] in unstable:
            nm.update(failed=[f"signature not stable: not found without the probe at step {unstable[nm['name']]}"],
                      expected=nm["name"], name=None)
        tr = nm["trends"]
        phases.append({"name": nm["name"], "expected": nm["expected"], "failed": nm["failed"],
                       "start": int(round(nm["start"])), "end": int(round(nm["end"])),
                       "segments": nm["last"] - nm["first"] + 1,
                       "change": {n: None if t["change"] is None else round(t["change"], 3) for n, t in tr.items()},
                       "trend": {n: t["trend"] for n, t in tr.items()}})
    end_of = {pos: name for name, pos in ends.items() if name[:-4] not in unstable}
    for b, s in enumerate(fit.starts):
        name = end_of.get(s - 0.5)
        lo, hi = jack[name] if name else (s - 0.5, s - 0.5)
        boundaries.append({"name": name, "step": int(round(_position_step(probes, s - 0.5, axis))),
                           "low": _bracket(probes, min(lo, boot[b][0]), max(hi, boot[b][1]))[0],
                           "high": _bracket(probes, min(lo, boot[b][0]), max(hi, boot[b][1]))[1],
                           "jackknife": _bracket(probes, lo, hi) if name and jackknife else None,
                           "bootstrap": _bracket(probes, *boot[b])})
    return {"method": f"piecewise-linear segments of the raw probe samples on a {axis} step axis, "
                      f"k <= {MAX_SEGMENTS} by BIC; names by signature, kept when stable under the jackknife",
            "axis": axis, "k": fit.k, "bic": fit.bic, "noise_phi": round(fit.phi, 3),
            "n_probes": int(probes.size), "signals": used, "signals_skipped": skipped,
            "measures": status.get("status") if isinstance(status, dict) else None,
            "val_midpoint": val_midpoint, "tentative": not generalized,
            "boundaries": boundaries, "phases": phases}

"""Nanda et al. (2023) phases from progress measures, by change-point detection.

Signals (any subset; at least one needed): ``circuit/excluded_loss``,
``circuit/restricted_loss``, ``weights/sum_sq`` (log10 of each), ``circuit/gini``, and
``val/loss`` (log10; the cleanup is where it collapses). They are resampled onto a
uniform step grid (linear or log, see ``axis``), scaled, and segmented into pieces that
are each linear on that grid (exact least squares, prefix sums, searched exactly with
``ruptures.Dynp``). Segments are named ``memorization``, ``circuit_formation``,
``cleanup`` and, when the data support a fourth piece (BIC), ``post_cleanup``.
Boundary intervals: the positions whose profile cost stays within the 95% chi-square
(1 dof) band of the best, with the noise variance estimated from the residuals.

Example:
    >>> from phasewatch.analysis.synthetic_examples import nanda_trace
    >>> t, truth = nanda_trace(seed=0)
    >>> r = nanda_phases_from_trace(t)
    >>> [p["name"] for p in r["phases"]][:3]
    ['memorization', 'circuit_formation', 'cleanup']
"""
from __future__ import annotations

import numpy as np

from .signals import clean

__all__ = ["PHASE_SIGNALS", "PHASE_NAMES", "nanda_phases", "nanda_phases_from_trace"]

PHASE_SIGNALS = {"circuit/excluded_loss": "log", "circuit/restricted_loss": "log",
                 "weights/sum_sq": "log", "circuit/gini": "lin", "val/loss": "log"}
PHASE_NAMES = ("memorization", "circuit_formation", "cleanup", "post_cleanup")
CHI2_95 = 3.841


def _lin_cost():
    """A ``ruptures`` cost: residual sum of squares of one straight line per dimension.

    The whole [start, end) cost matrix is computed at ``fit`` with prefix sums (numpy),
    so ``error`` is a lookup.
    """
    from ruptures.base import BaseCost

    class CostLinearFast(BaseCost):
        model = "linear_fast"
        min_size = 3

        def fit(self, signal):
            y = np.asarray(signal, dtype=float)
            y = y[:, None] if y.ndim == 1 else y
            n = y.shape[0]
            t = np.arange(n, dtype=float)[:, None]
            z = np.zeros((1, y.shape[1]))
            cy = np.vstack([z, np.cumsum(y, 0)])
            cty = np.vstack([z, np.cumsum(t * y, 0)])
            cyy = np.vstack([z, np.cumsum(y * y, 0)])
            ct = np.concatenate([[0.0], np.cumsum(t[:, 0])])
            ctt = np.concatenate([[0.0], np.cumsum(t[:, 0] ** 2)])
            a, b = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
            m = np.maximum(b - a, 1).astype(float)
            st, stt = ct[b] - ct[a], ctt[b] - ctt[a]
            vt = stt - st * st / m
            sy = cy[b] - cy[a]
            cov = (cty[b] - cty[a]) - st[..., None] * sy / m[..., None]
            vy = (cyy[b] - cyy[a]) - sy * sy / m[..., None]
            with np.errstate(divide="ignore", invalid="ignore"):
                rss = np.where(vt[..., None] > 1e-12, vy - cov * cov / vt[..., None], vy)
            self.matrix = np.maximum(rss, 0.0).sum(-1)
            self.signal = y
            return self

        def error(self, start, end):
            return float(self.matrix[start, end])

    return CostLinearFast()


def _total(cost, bkps):
    edges = [0, *bkps]
    return sum(cost.error(a, b) for a, b in zip(edges[:-1], edges[1:]))


def nanda_phases(grid: np.ndarray, signal: np.ndarray, min_size: int = 5,
                 n_bkps: tuple = (2, 3)) -> dict:
    """Segment a scaled ``[n, d]`` signal on step ``grid``; boundaries with intervals (steps).

    ``n_bkps``: candidate numbers of boundaries; with (2, 3) a BIC picks between them.
    """
    import ruptures as rpt

    n, d = signal.shape
    cost = _lin_cost().fit(signal)
    algo = rpt.Dynp(custom_cost=cost, min_size=min_size, jump=2).fit(signal)
    fits: dict = {}
    for k in n_bkps:
        try:
            b = algo.predict(n_bkps=k)
        except rpt.exceptions.BadSegmentationParameters:
            continue
        fits[k] = (b, _total(cost, b))
    if not fits:
        return {"insufficient": f"insufficient data for Nanda phases: {n} grid points"}
    k = max(fits)
    if len(n_bkps) > 1 and 2 in fits and 3 in fits:
        sig2 = fits[3][1] / max(n * d - 3 * 2 * d - 3, 1)
        # BIC: keep the 4th segment only if it pays for its 2d parameters + 1 boundary
        if fits[2][1] - fits[3][1] < (2 * d + 1) * np.log(n * d) * sig2:
            k = 2
    bkps, best = list(fits[k][0]), fits[k][1]
    for i in range(k):  # refine each boundary to single-point resolution (Dynp used jump=2)
        left = (bkps[i - 1] if i else 0) + min_size
        right = bkps[i + 1] - min_size
        for c in range(max(left, bkps[i] - 2), min(right, bkps[i] + 2) + 1):
            trial = bkps[:i] + [c] + bkps[i + 1:]
            tc = _total(cost, trial)
            if tc < best:
                best, bkps = tc, trial
    sig2 = best / max(n * d - (k + 1) * 2 * d - k, 1)
    inner = bkps[:-1]
    boundaries = []
    for i, b in enumerate(inner):
        left = (inner[i - 1] if i else 0) + min_size
        right = (inner[i + 1] if i + 1 < len(inner) else n) - min_size
        ok = []
        for c in range(left, right + 1):
            trial = list(bkps)
            trial[i] = c
            if (_total(cost, trial) - best) / max(sig2, 1e-12) <= CHI2_95:
                ok.append(c)
        lo_i, hi_i = (min(ok), max(ok)) if ok else (b, b)
        boundaries.append({"name": f"{PHASE_NAMES[i]}_end", "step": int(round(grid[b])),
                           "low": int(round(grid[max(lo_i - 1, 0)])),
                           "high": int(round(grid[min(hi_i, n - 1)]))})
    edges = [0, *inner, n - 1]
    phases = []
    for j in range(len(edges) - 1):
        a, b = edges[j], edges[j + 1]
        slopes = np.polyfit(grid[a:b + 1] - grid[a], signal[a:b + 1], 1)[0] * (grid[b] - grid[a])
        phases.append({"name": PHASE_NAMES[j], "start": int(round(grid[a])), "end": int(round(grid[b])),
                       "change": slopes.tolist()})
    return {"boundaries": boundaries, "phases": phases, "noise_var": float(sig2)}


def _settled(s: np.ndarray, v: np.ndarray, frac: float = 0.05) -> float:
    """Last step at which the (running-median) trace is > ``frac`` of its range from its end value."""
    from .signals import log_bin, running_median
    bs, bv = log_bin(s, v, 2000)
    sm = running_median(bv, 5)
    final = float(np.median(sm[-max(3, sm.size // 20):]))
    rng = float(sm.max() - sm.min())
    if rng <= 0:
        return float(bs[0])
    off = np.flatnonzero(np.abs(sm - final) > frac * rng)
    return float(bs[off[-1]]) if off.size else float(bs[0])


def nanda_phases_from_trace(trace, n_grid: int = 200, generalized: bool = True,
                            axis: str = "auto") -> dict:
    """Nanda phases of a run (reader API); ``{"insufficient": ...}`` when no measure was logged.

    ``generalized=False`` (val accuracy never reached the threshold): the cleanup, which ends
    with the test-loss collapse, cannot have happened, so only the end of memorization is
    searched (two segments, the second "circuit_formation" still going) and the result is
    marked ``tentative``.
    ``axis``: resample on a ``linear`` or ``log`` step grid; ``auto`` (default) segments on
    both and keeps the one whose straight pieces fit better (lower residual variance of the
    scaled measures): Nanda's phases are linear in epochs on long runs, our short CPU runs'
    phases are closer to equal in log-step.
    """
    names = set(trace.names())
    used = [n for n in PHASE_SIGNALS if n in names]
    if not any(n.startswith(("circuit/", "weights/sum_sq")) for n in used):
        return {"insufficient": "insufficient data for Nanda phases: none of "
                "circuit/excluded_loss, circuit/restricted_loss, weights/sum_sq, circuit/gini logged"}
    cols, got = [], []
    for n in used:
        s, v, _ = clean(*trace.series(n))
        if PHASE_SIGNALS[n] == "log":
            keep = v > 0
            s, v = s[keep], np.log10(v[keep])
        if s.size >= 10:
            cols.append((s, v))
            got.append(n)
    if not cols:
        return {"insufficient": "insufficient data for Nanda phases: fewer than 10 points per measure"}
    # measures that start late (e.g. circuit losses only once key frequencies exist) or stop
    # early would cut the common span: keep those covering >= 80% of the longest span
    first, final = min(c[0][0] for c in cols), max(c[0][-1] for c in cols)
    cover = [(min(s[-1], final) - max(s[0], first)) / max(final - first, 1) for s, _ in cols]
    skipped = [n for n, c in zip(got, cover) if c < 0.8]
    cols = [c for c, cv in zip(cols, cover) if cv >= 0.8]
    got = [n for n, cv in zip(got, cover) if cv >= 0.8]
    if not cols:
        return {"insufficient": "insufficient data for Nanda phases: the measures do not overlap in steps"}
    start = max(c[0][0] for c in cols)
    last = min(c[0][-1] for c in cols)
    if last - start < 10:
        return {"insufficient": "insufficient data for Nanda phases: the measures do not overlap in steps"}
    # a run trained long after the cleanup would waste the grid on a flat tail: end the grid
    # at 1.5 x the step where the last measure settles (within 5% of its range of its end value)
    settle = max(_settled(s, v) for s, v in cols)
    end = float(min(last, max(1.5 * settle, start + 0.05 * (last - start))))
    axes = ("linear", "log") if axis == "auto" else (axis,)
    if axis not in ("auto", "linear", "log"):
        raise ValueError(f"axis must be 'auto', 'linear' or 'log', got {axis!r}")
    best = None
    for ax in axes:
        if ax == "log":
            grid = np.geomspace(max(start, 1), end, n_grid)
        else:
            grid = np.linspace(start, end, n_grid)
        mat = []
        for s, v in cols:
            g = np.interp(grid, s, v)
            sd = np.std(g)
            mat.append((g - g.mean()) / sd if sd > 0 else g * 0)
        res = nanda_phases(grid, np.stack(mat, axis=1), n_bkps=(2, 3) if generalized else (1,))
        if "insufficient" in res:
            continue
        res["axis"] = ax
        if best is None or res["noise_var"] < best["noise_var"]:
            best = res
    out = best or {"insufficient": f"insufficient data for Nanda phases: {n_grid} grid points"}
    if "insufficient" not in out:
        out["tentative"] = not generalized
        out["signals_skipped"] = skipped
        out["phases"][-1]["end"] = int(last)
        out["grid_end"] = int(round(end))
        out["signals"] = got
        for p in out["phases"]:
            p["change"] = dict(zip(got, (round(c, 3) for c in p["change"])))
    return out

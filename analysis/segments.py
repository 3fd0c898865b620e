"""Piecewise-linear segmentation of raw samples: exact search, penalized likelihood, intervals.

The model (docs/science.md, "Phases within a run"): on a step axis ``x`` (step or log10
step), every column of ``Y`` [n samples, d signals] is a straight line within each of ``k``
segments (2 d parameters per segment, lines may jump at a boundary), plus noise with its own
scale per signal and lag-1 autocorrelation ``phi``. The noise scale of each signal comes from
the residuals of the richest fit (``max_segments``); autocorrelated noise makes n samples
worth fewer independent ones, so the residual sum of squares is divided by the long-run
variance factor ``(1 + phi) / (1 - phi)`` before the criterion

    BIC(k) = RSS_k / (sigma^2 (1 + phi) / (1 - phi)) + (2 d k + k - 1) ln(number of samples)

(2 d line parameters per segment and k - 1 boundary positions) picks ``k``. The best
partition for each ``k`` is found exactly (dynamic programming over all partitions with at
least ``min_size`` samples per segment). Nothing is interpolated: only the samples count.

``bootstrap_positions`` resamples the probes' residual rows in moving blocks (``k`` fixed)
to give each boundary a percentile interval.

Example:
    >>> import numpy as np
    >>> x = np.arange(30.0)
    >>> y = np.where(x < 12, x, 12 - 2 * (x - 12)) + np.random.default_rng(0).normal(0, .3, 30)
    >>> fit = select_segments(x, y[:, None])
    >>> fit.k, fit.starts
    (2, [13])
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SegmentFit", "segment_costs", "best_partitions", "select_segments", "bootstrap_positions",
           "line_fit"]

PHI_MAX = 0.8


def segment_costs(x: np.ndarray, Y: np.ndarray, per_column: bool = False) -> np.ndarray:
    """``C[a, b]``: residual sum of squares of one least-squares line per column on rows a..b-1.

    Summed over columns, or ``[n+1, n+1, d]`` with ``per_column`` (then dividing column j
    by s_j divides its slice by s_j^2: the costs of any column scaling in one product).
    NaN entries of ``Y`` are missing samples (that signal was not logged at that row); each
    column is fitted on its own samples. Prefix sums make the whole [n+1, n+1] matrix one
    vectorized computation. ``Y`` [B, n, d] gives one matrix per leading index ([B, n+1, n+1]).
    """
    x = np.asarray(x, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if Y.ndim < 3:
        Y = Y.reshape(len(x), -1)
    W = np.isfinite(Y).astype(float)
    Y0 = np.where(W > 0, Y, 0.0)
    X = x[:, None] * W
    z = np.zeros((*Y.shape[:-2], 1, Y.shape[-1]))
    cw, cx, cxx, cy, cxy, cyy = (np.concatenate([z, np.cumsum(v, -2)], -2)
                                 for v in (W, X, X * x[:, None], Y0, X * Y0, Y0 * Y0))
    m, sx, sxx, sy, sxy, syy = (c[..., None, :, :] - c[..., :, None, :]
                                for c in (cw, cx, cxx, cy, cxy, cyy))
    m = np.maximum(m, 1.0)
    vx = sxx - sx * sx / m
    cov = sxy - sx * sy / m
    vy = syy - sy * sy / m
    with np.errstate(divide="ignore", invalid="ignore"):
        rss = np.where(vx > 1e-12 * np.maximum(np.abs(sxx), 1.0), vy - cov * cov / vx, vy)
    rss = np.maximum(rss, 0.0)
    return rss if per_column else rss.sum(-1)


def _partition_tables(C: np.ndarray, max_segments: int, min_size: int) -> tuple[list, list]:
    """Dynamic programming on cost matrices ``C`` [B, n+1, n+1]: per k, the best cost of rows
    0..j-1 in k segments (``F[k-1]`` [B, n+1]) and the start of the last one (``arg[k-1]``)."""
    n = C.shape[-1] - 1
    i, j = np.arange(n + 1)[:, None], np.arange(n + 1)[None, :]
    C = np.where(j - i >= min_size, C, np.inf)
    F, arg = [C[:, 0]], [None]
    for _ in range(2, max_segments + 1):
        tot = F[-1][:, :, None] + C
        arg.append(np.argmin(tot, axis=1))
        F.append(np.take_along_axis(tot, arg[-1][:, None, :], 1)[:, 0])
    return F, arg


def _starts(arg: list, k: int, n: int) -> np.ndarray:
    """[B, k-1] first rows of segments 2..k (k >= 2) of the best k-segment partitions (ascending)."""
    jj, starts = np.full(arg[1].shape[0], n), []
    for kk in range(k, 1, -1):
        jj = arg[kk - 1][np.arange(jj.size), jj]
        starts.append(jj)
    return np.stack(starts[::-1], 1)


def best_partitions(C: np.ndarray, max_segments: int, min_size: int) -> dict:
    """Exact best partition for each k = 1..max_segments: ``{k: (starts, cost)}``.

    ``starts`` are the first rows of segments 2..k. Dynamic programming on the cost matrix.
    """
    n = C.shape[0] - 1
    F, arg = _partition_tables(C[None], max_segments, min_size)
    return {k: ([int(s) for s in _starts(arg, k, n)[0]] if k > 1 else [], float(F[k - 1][0, n]))
            for k in range(1, max_segments + 1) if np.isfinite(F[k - 1][0, n])}


def line_fit(x: np.ndarray, Y: np.ndarray, starts: list) -> np.ndarray:
    """Fitted values of one least-squares line per column and segment (NaN where ``Y`` is)."""
    Y = np.asarray(Y, dtype=float).reshape(len(x), -1)
    W = np.isfinite(Y)
    out = np.full_like(Y, np.nan)
    edges = [0, *starts, len(x)]
    for a, b in zip(edges[:-1], edges[1:]):
        w, y, xs = W[a:b], np.where(W[a:b], Y[a:b], 0.0), x[a:b, None]
        m = np.maximum(w.sum(0), 1)
        xm, ym = (w * xs).sum(0) / m, y.sum(0) / m
        dx = (xs - xm) * w
        vx = (dx * dx).sum(0)
        slope = np.where(vx > 0, (dx * y).sum(0) / np.where(vx > 0, vx, 1.0), 0.0)
        out[a:b] = np.where(w, ym + (xs - xm) * slope, np.nan)
    return out


def _lag1(res: np.ndarray, starts: list) -> float:
    """Pooled lag-1 autocorrelation of residual columns, pairs within segments only."""
    res = np.nan_to_num(res)
    keep = np.ones(len(res) - 1, dtype=bool)
    keep[[s - 1 for s in starts]] = False
    num = float(np.sum(res[:-1][keep] * res[1:][keep]))
    den = float(np.sum(res * res))
    return float(np.clip(num / den if den > 0 else 0.0, 0.0, PHI_MAX))


@dataclass(frozen=True)
class SegmentFit:
    """The selected segmentation: ``starts`` (first row of segments 2..k), noise and criterion."""

    k: int
    starts: list
    sigma: np.ndarray        # per-column noise scale (input units)
    phi: float               # pooled lag-1 autocorrelation of the residuals
    bic: dict                # {k: BIC}
    fitted: np.ndarray       # [n, d] fitted values (input units)

    @property
    def inflation(self) -> float:
        """Long-run variance factor (1 + phi) / (1 - phi)."""
        return (1 + self.phi) / (1 - self.phi)


def _diff_sigma(x: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Robust per-column noise scale from each sample's distance to the line through its neighbours.

    A kink or jump spoils only a few of these distances; the median ignores them.
    """
    out = np.zeros(Y.shape[1])
    for j in range(Y.shape[1]):
        ok = np.isfinite(Y[:, j])
        xj, yj = x[ok], Y[ok, j]
        if len(xj) < 3:
            continue
        w = (xj[1:-1] - xj[:-2]) / np.maximum(xj[2:] - xj[:-2], 1e-300)
        r = yj[1:-1] - (yj[:-2] * (1 - w) + yj[2:] * w)
        out[j] = np.median(np.abs(r) / np.sqrt(1 + w * w + (1 - w) ** 2)) / 0.6745
    return out


def select_segments(x, Y, max_segments: int = 4, min_size: int = 3, k: int | None = None,
                    sigma_floor: np.ndarray | None = None) -> SegmentFit | None:
    """Fit 1..``max_segments`` segments and pick k by BIC (or use ``k``); None if too few rows.

    The noise scale starts from a difference-based estimate (``_diff_sigma``) and is then
    taken from the residuals of the selected fit, re-selecting until k stops changing.
    ``sigma_floor``: lowest noise scale per column (a model-misfit floor; default 1e-9).
    """
    x = np.asarray(x, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(x), -1)
    n, d = Y.shape
    kmax = min(max_segments, n // min_size)
    if kmax < 1 or (k is not None and k > kmax):
        return None
    n_obs = int(np.isfinite(Y).sum())
    floor = np.full(d, 1e-9) if sigma_floor is None else np.maximum(sigma_floor, 1e-9)
    sigma, phi, seen = np.maximum(_diff_sigma(x, Y), floor), 0.0, []
    per_col = segment_costs(x, Y, per_column=True)
    for _ in range(4):
        parts = best_partitions(per_col @ (1.0 / sigma ** 2), kmax, min_size)
        infl = (1 + phi) / (1 - phi)
        bic = {kk: c / infl + (2 * d * kk + kk - 1) * np.log(n_obs) for kk, (_, c) in parts.items()}
        kk = k if k is not None else min(bic, key=bic.get)
        starts = parts[kk][0]
        res = Y - line_fit(x, Y, starts)
        dof = np.maximum(np.isfinite(Y).sum(0) - 2 * kk - (kk - 1), 1)
        sigma = np.maximum(np.sqrt(np.nansum(res * res, 0) / dof), floor)
        phi = _lag1(res / sigma, starts)
        if kk in seen:
            break
        seen.append(kk)
    return SegmentFit(kk, starts, sigma, phi, {int(a): float(b) for a, b in bic.items()},
                      line_fit(x, Y, starts))


def _block_resample(res: np.ndarray, block: int, rng) -> np.ndarray:
    n = len(res)
    idx = np.concatenate([np.arange(s, s + block) for s in rng.integers(0, n - block + 1, n // block + 1)])
    return res[idx[:n]]


def bootstrap_positions(x, Y, fit: SegmentFit, n_boot: int = 200, seed: int = 0,
                        min_size: int = 3) -> list:
    """Per boundary, the 2.5 % and 97.5 % quantiles of its position over a block bootstrap.

    A position ``s - 0.5`` means "between rows s-1 and s". Each replicate adds moving blocks
    of residual rows (all signals of a probe together; block length from ``phi``) to the
    fitted values and refits with ``k`` fixed.
    """
    x = np.asarray(x, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(x), -1)
    n = len(x)
    est = [s - 0.5 for s in fit.starts]
    rng = np.random.default_rng(seed)
    res = np.nan_to_num(Y - fit.fitted) * np.sqrt(n / max(n - 2 * fit.k, 1))
    missing = ~np.isfinite(Y)
    block = int(np.clip(round((1 + fit.phi) / (1 - fit.phi)), 1, max(n // 4, 1)))
    boots = []
    draws = [_block_resample(res, block, rng) for _ in range(n_boot if fit.k > 1 else 0)]
    for chunk in range(0, len(draws), 50):  # all replicates of a chunk in one computation
        Yb = fit.fitted + np.stack(draws[chunk:chunk + 50])
        Yb[:, missing] = np.nan
        F, arg = _partition_tables(segment_costs(x, Yb / fit.sigma), fit.k, min_size)
        boots.append(_starts(arg, fit.k, n)[np.isfinite(F[fit.k - 1][:, n])] - 0.5)
    boots = np.concatenate(boots) if boots else np.zeros((0, len(est)))
    return [[float(q) for q in np.quantile(boots[:, j], [0.025, 0.975])] if len(boots) else [e, e]
            for j, e in enumerate(est)]

"""Event detectors over one ``(steps, values)`` trace.

Every detector is a pure function ``detector(steps, values, ...) -> Event | list | None``
returning frozen :class:`Event` records: a step, an uncertainty interval ``[low, high]``,
the signal it came from and the evidence (numbers that justify it).

Example:
    >>> import numpy as np
    >>> s = np.arange(0, 1000, 10); v = (s >= 500).astype(float)
    >>> threshold_event(s, v, 0.99, name="generalization", signal="val/acc").step
    500
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .signals import clean, log10_step, log_bin, reach_and_stay, running_median

__all__ = ["Event", "Transition", "threshold_event", "fit_transition", "detect_spikes"]

LN9 = math.log(9.0)


@dataclass(frozen=True)
class Event:
    """A dated event: ``step`` with interval ``[low, high]`` (steps), from ``signal``."""

    name: str
    step: int | None
    low: int | None
    high: int | None
    signal: str
    evidence: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Transition:
    """A sigmoid fitted on the log10-step axis: ``lo + (hi-lo) / (1 + exp(-(x - x0)/width))``.

    ``onset`` / ``midpoint`` / ``completion`` are the 10% / 50% / 90% points of the rise.
    """

    signal: str
    lo: float
    hi: float
    x0: float
    width: float
    rmse: float
    onset: Event
    midpoint: Event
    completion: Event

    def to_dict(self) -> dict:
        return {"signal": self.signal, "lo": self.lo, "hi": self.hi, "log10_midpoint": self.x0,
                "width_decades": self.width, "rmse": self.rmse,
                "onset": self.onset.to_dict(), "midpoint": self.midpoint.to_dict(),
                "completion": self.completion.to_dict()}


def threshold_event(steps, values, threshold: float, *, name: str, signal: str,
                    hysteresis: float = 0.02, smooth: int = 5,
                    smoothed: np.ndarray | None = None) -> Event | None:
    """First step at which ``values`` reaches ``threshold`` and stays (see ``reach_and_stay``).

    The interval is ``[previous sample, crossing sample]``: the true crossing lies between.
    None when the trace ends below the threshold or is empty.
    """
    s, v, _ = clean(steps, values)
    if smoothed is not None and len(smoothed) == v.size:   # reuse (same cleaned trace)
        sm = smoothed
    else:
        sm = running_median(v, smooth) if v.size >= smooth else v
    hit = reach_and_stay(s, v, threshold, hysteresis=hysteresis, smooth=smooth, smoothed=sm)
    if hit is None:
        return None
    i_prev, i = hit
    lo_i, hi_i = noise_band(v, i, threshold, smooth, smoothed=sm)
    return Event(name, int(s[i]), int(s[min(i_prev, lo_i)]), int(s[max(i, hi_i)]), signal,
                 {"threshold": threshold, "value": float(v[i]), "hysteresis": hysteresis})


def noise_band(v: np.ndarray, i: int, level: float, smooth: int = 5, k: float = 2.0,
               smoothed: np.ndarray | None = None) -> tuple[int, int]:
    """Samples where the running median first enters ``level -+ k sigma`` around sample ``i``.

    sigma is the noise of the running median near ``i`` (MAD of first differences).
    Used as the uncertainty interval of a threshold crossing.
    """
    a, b = max(0, i - 20), min(v.size, i + 21)
    d = np.diff(v[a:b])
    sig = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2) if d.size > 2 else 0.0
    sig /= np.sqrt(max(smooth, 1) / 1.5)
    sm = running_median(v, smooth) if smoothed is None else smoothed
    j = i
    while j > 0 and sm[j - 1] >= level - k * sig and i - j < 50:
        j -= 1
    top = min(level + k * sig, float(np.percentile(v[i:i + 2000], 90)))
    after = np.flatnonzero(sm[i:] >= top)
    h = i + int(after[0]) if after.size else i
    return j, h


def _grid(x: np.ndarray, y: np.ndarray, dx: float) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``y`` in bins of width ``dx`` along ``x`` (empty bins dropped)."""
    b = np.floor((x - x[0]) / dx).astype(np.int64)
    cnt = np.bincount(b)
    keep = cnt > 0
    return (np.bincount(b, weights=x)[keep] / cnt[keep], np.bincount(b, weights=y)[keep] / cnt[keep])


def _sigmoid(x, lo, hi, x0, w):
    z = np.clip((x - x0) / w, -60, 60)
    return lo + (hi - lo) / (1.0 + np.exp(-z))


def fit_transition(steps, values, *, signal: str, name: str = "transition",
                   direction: int = 1, min_rise: float = 0.1,
                   max_points: int = 1500, max_se: float = 0.25) -> Transition | None:
    """Fit the LAST rise (``direction=1``) or fall (``-1``) of a trace with a log-step sigmoid.

    The fit window starts at the foot of the last rise: walking back from where the trace
    last sat 20% of its range below its final level to the first flat stretch (8 bins of
    0.02 decades varying by < max(4 noise, 5% range)), so an earlier rise (e.g. the symmetry plateau of val acc
    at the training fraction) does not bias the fit. Returns None when the trace has fewer
    than 8 finite points, rises by less than ``min_rise``, or the fit is unreliable (standard
    error of the midpoint > ``max_se`` decades, or rmse > 25% of the fitted rise).
    Intervals: +-1.96 standard errors (delta method on the fit covariance), never narrower
    than the sampling gap around the point.
    """
    from scipy.optimize import curve_fit

    s, v, _ = clean(steps, values)
    if s.size < 8:
        return None
    v = v * direction
    bs, bv = log_bin(s, v, max_points)
    x = log10_step(bs)
    gx, gy = _grid(x, bv, 0.02)
    sm = running_median(gy, 3)
    n_tail = max(3, bv.size // 10)
    hi = float(np.median(bv[-n_tail:]))
    rng_ = hi - float(np.min(sm))
    if rng_ < min_rise or gy.size < 4:
        return None
    below = np.flatnonzero(sm < hi - 0.2 * rng_)
    if below.size == 0:
        return None
    i_top = int(below[-1]) + 1
    # walk back from the top of the last rise to the first flat stretch (its foot)
    d = np.diff(gy)
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / math.sqrt(2) if d.size else 0.0
    tol = max(4 * noise, 0.05 * rng_)
    L = 8
    j = i_top
    foot = 0
    while j - L >= 0:
        seg = sm[j - L: j]
        if seg.max() - seg.min() <= tol and sm[j - 1] < hi - 0.5 * rng_:
            foot = j - L
            break
        j -= 1
    lo = float(np.median(sm[foot: foot + L])) if foot or j - L >= 0 else float(np.min(sm))
    if hi - lo < min_rise:
        return None
    x_start = gx[foot]
    xc = gx[min(i_top, gx.size - 1)]
    sel = x >= x_start - 1e-12
    if sel.sum() < 6:
        sel = np.ones_like(x, dtype=bool)
    xs, ys = x[sel], bv[sel]
    span = max(xs[-1] - xs[0], 1e-3)
    p0 = (lo, hi, xc, min(0.1, span / 4))
    lo_b = (min(lo, hi) - abs(hi - lo), min(lo, hi), xs[0] - 0.5, 1e-3)
    hi_b = (max(lo, hi), max(lo, hi) + abs(hi - lo), xs[-1] + 0.5, 3.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = curve_fit(_sigmoid, xs, ys, p0=p0, bounds=(lo_b, hi_b), maxfev=4000)
    except (RuntimeError, ValueError):
        return None
    flo, fhi, x0, w = (float(p) for p in popt)
    resid = ys - _sigmoid(xs, *popt)
    rmse = float(np.sqrt(np.mean(resid ** 2)))
    cov = np.asarray(pcov, dtype=float)
    se_mid = math.sqrt(cov[2, 2]) if np.isfinite(cov[2, 2]) and cov[2, 2] >= 0 else float("inf")
    if se_mid > max_se or rmse > 0.25 * abs(fhi - flo):
        return None                       # no reliable sigmoid (e.g. a rise then a fall)
    events = []
    for label, k, frac in (("onset", -LN9, 0.1), ("midpoint", 0.0, 0.5), ("completion", LN9, 0.9)):
        xe = x0 + k * w
        if np.all(np.isfinite(cov)):
            var = cov[2, 2] + k * k * cov[3, 3] + 2 * k * cov[2, 3]
            se = math.sqrt(max(var, 0.0))
        else:
            se = float("nan")
        # sampling resolution around the point: half the local gap between raw samples
        j = int(np.clip(np.searchsorted(x, xe), 1, x.size - 1))
        gap = (x[j] - x[j - 1]) / 2 if x.size > 1 else 0.0
        half = min(max(1.96 * se if math.isfinite(se) else gap, gap), 2.0)  # cap: 2 decades
        step = 10 ** xe
        events.append(Event(f"{name}_{label}", int(round(step)), max(0, int(math.floor(10 ** (xe - half)))),
                            int(math.ceil(10 ** (xe + half))), signal,
                            {"log10_step": xe, "se_decades": se, "extrapolated": bool(xe > x[-1]),
                             "level": (flo + (fhi - flo) * frac) * direction}))
    return Transition(signal, flo * direction, fhi * direction, x0, w, rmse, *events)


def detect_spikes(steps, values, *, signal: str, name: str = "slingshot",
                  decades: float = 1.0, window: int = 11) -> list[Event]:
    """Loss spikes: log10(loss) above its running median by more than ``decades``.

    Consecutive spiking samples form one event dated at the peak; its interval spans the
    spiking samples. Non-positive and non-finite values are ignored.
    """
    s, v, _ = clean(steps, values)
    keep = v > 0
    s, v = s[keep], v[keep]
    if s.size < window:
        return []
    lv = np.log10(v)
    resid = lv - running_median(lv, window)
    hot = resid > decades
    out: list[Event] = []
    idx = np.flatnonzero(hot)
    if idx.size == 0:
        return out
    groups = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    for g in groups:
        peak = g[np.argmax(resid[g])]
        out.append(Event(name, int(s[peak]), int(s[g[0]]), int(s[g[-1]]), signal,
                         {"value": float(v[peak]), "decades_above_median": float(resid[peak])}))
    return out

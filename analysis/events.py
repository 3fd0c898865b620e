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
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from .signals import clean, log10_step, log_bin, reach_and_stay, running_median

__all__ = ["Event", "Transition", "crossing_step", "threshold_event", "fall_event", "plateau_argmax",
           "noise_band", "fit_transition", "LOSS_FLOOR", "detect_spikes"]

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
    resid_x: tuple = ()          # log10 steps and residuals of the fit (for local noise)
    resid: tuple = ()

    @property
    def window(self) -> tuple[float, float]:
        """log10 steps of the first and last sample of the fit window."""
        return (self.resid_x[0], self.resid_x[-1]) if self.resid_x else (self.x0, self.x0)

    def level_interval(self, level: float) -> tuple[int, int]:
        """Measurement interval (steps) of the crossing of ``level``: see :func:`_band`."""
        d = 1.0 if self.hi >= self.lo else -1.0
        x_lo, x_hi = _band((self.lo * d, self.hi * d, self.x0, self.width),
                           np.asarray(self.resid_x), np.asarray(self.resid), level * d)
        return max(0, int(math.floor(10 ** x_lo))), int(math.ceil(10 ** x_hi))

    def widen(self, e: Event) -> Event:
        """Threshold event ``e`` with its interval widened to :meth:`level_interval` of its
        threshold when it lies inside the fit window: a noisy curve's crossing is known no
        better than that."""
        if not 10 ** self.window[0] <= e.step <= 10 ** self.window[1]:
            return e
        lo, hi = self.level_interval(e.evidence["threshold"])
        return replace(e, low=min(e.low, lo), high=max(e.high, hi))

    def to_dict(self) -> dict:
        return {"signal": self.signal, "lo": self.lo, "hi": self.hi, "log10_midpoint": self.x0,
                "width_decades": self.width, "rmse": self.rmse, "log10_window": list(self.window),
                "onset": self.onset.to_dict(), "midpoint": self.midpoint.to_dict(),
                "completion": self.completion.to_dict()}


def crossing_step(steps, curve, i: int, level: float) -> float:
    """Step where ``curve`` crosses ``level`` between samples ``i-1`` and ``i`` (linear interpolation).

    >>> crossing_step(np.array([0, 10, 20]), np.array([0., .5, 1.]), 2, 0.9)
    18.0
    """
    if i <= 0:
        return float(steps[0])
    a, b = float(curve[i - 1]), float(curve[i])
    frac = 1.0 if b == a else min(max((level - a) / (b - a), 0.0), 1.0)
    return float(steps[i - 1] + frac * (steps[i] - steps[i - 1]))


def threshold_event(steps, values, threshold: float, *, name: str, signal: str,
                    hysteresis: float = 0.02, smooth: int = 5,
                    smoothed: np.ndarray | None = None, first_reach: bool = False) -> Event | None:
    """Step at which the running median of ``values`` crosses ``threshold`` (docs/science.md#events-run-classes-and-intervals).

    Default: the crossing after which it stays (see ``reach_and_stay``); ``first_reach=True``:
    the first crossing even if the trace falls back later (memorization that is later undone).
    The step is interpolated linearly between the two evaluations that bracket the crossing;
    the measurement interval ``[low, high]`` holds at least those two evaluations and, where
    the curve is flat near the threshold, every sample within its noise band. None when the
    threshold is not reached (kept) or the trace is empty.
    """
    s, v, _ = clean(steps, values)
    if smoothed is not None and len(smoothed) == v.size:   # reuse (same cleaned trace)
        sm = smoothed
    else:
        sm = running_median(v, smooth) if v.size >= smooth else v
    hit = reach_and_stay(s, v, threshold, hysteresis=hysteresis, smooth=smooth, smoothed=sm)
    fell_later = False
    if hit is None and first_reach and v.size and np.any(sm >= threshold):
        i = int(np.argmax(sm >= threshold))
        hit, fell_later = (max(i - 1, 0), i), True
    if hit is None:
        return None
    i_prev, i = hit
    t = crossing_step(s, sm, i, threshold)
    lo_i, hi_i = noise_band(v, i, threshold, smooth, smoothed=sm)
    return Event(name, int(round(t)), int(s[min(i_prev, lo_i)]), int(s[max(i, hi_i)]), signal,
                 {"threshold": threshold, "value": float(v[i]), "hysteresis": hysteresis,
                  "interpolated_step": t, "bracket": [int(s[i_prev]), int(s[i])],
                  "rule": ("first reach" if first_reach else "reach and stay")
                  + f" of the running median ({smooth} evaluations), interpolated",
                  **({"fell_later": True} if fell_later else {})})


def fall_event(steps, values, reached: float, drop: float, *, name: str, signal: str,
               smooth: int = 5) -> Event | None:
    """The trace reached ``reached`` (running median), then fell below ``reached - drop`` and ended there.

    Dated at the last downward crossing of ``reached - drop`` (interpolated); evidence holds the
    step it first reached ``reached`` and the final level. Used for ``ungrokking`` (val acc)
    and ``train_acc_fall`` (train acc; docs/science.md#events-run-classes-and-intervals).

    >>> s = np.arange(0, 100, 10); v = np.array([0, 1, 1, 1, 1, 1, .6, .6, .6, .6])
    >>> e = fall_event(s, v, 0.99, 0.1, name="fall", signal="x"); e.step, e.evidence["final"]
    (53, 0.6)
    """
    s, v, _ = clean(steps, values)
    if s.size < smooth:
        return None
    sm = running_median(v, smooth)
    level = reached - drop
    up = np.flatnonzero(sm >= reached)
    if up.size == 0 or sm[-1] >= level:
        return None
    i = int(np.flatnonzero(sm >= level)[-1]) + 1      # first sample of the final stretch below
    t = crossing_step(s, -sm, i, -level)
    a, b = noise_band(-v, i, -level, smooth, smoothed=-sm)
    return Event(name, int(round(t)), int(s[max(min(i - 1, a), 0)]), int(s[max(i, b)]), signal,
                 {"reached_at": int(s[up[0]]), "reached": reached, "final": float(sm[-1]),
                  "drop": drop, "interpolated_step": t})


def plateau_argmax(steps, values, *, name: str, signal: str, smooth: int = 5,
                   min_tolerance: float = 1e-3) -> Event | None:
    """Argmax of the smoothed trace, with the plateau around it as its interval.

    Smoothing: running median then running mean over ``smooth`` evaluations, edges repeating
    the end values (no zero padding, so the last evaluations can be the maximum). The interval
    spans every step whose smoothed value is within the tolerance of the maximum (twice the
    noise of the raw trace around the smoothed one, at least ``min_tolerance``): an argmax on a
    plateau is known only to the plateau (docs/science.md#memorization).

    >>> s = np.arange(0, 140, 10)
    >>> e = plateau_argmax(s, np.r_[0., .5, 1, 1, 1, 1, 1, 1, 1, 1, .5, 0, 0, 0], name="b", signal="v")
    >>> e.step, e.low, e.high
    (40, 40, 70)
    """
    from scipy.ndimage import uniform_filter1d

    s, v, _ = clean(steps, values)
    if s.size < 3:
        return None
    med = running_median(v, smooth)
    sm = uniform_filter1d(med, size=min(smooth, s.size), mode="nearest")
    i = int(np.argmax(sm))
    noise = 1.4826 * float(np.median(np.abs(v - med)))
    tol = max(2.0 * noise, min_tolerance)
    near = np.flatnonzero(sm >= sm[i] - tol)
    return Event(name, int(s[i]), int(s[near[0]]), int(s[near[-1]]), signal,
                 {"smoothed_max": float(sm[i]), "tolerance": tol})


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


def _inverse_sigmoid(level: float, popt) -> float:
    """log10 step where the fitted sigmoid takes ``level``, held to its 1-99 % part (a level
    outside the rise is placed at the rise's 1 % or 99 % point, not at infinity)."""
    lo, hi, x0, w = popt
    u = min(max((level - lo) / (hi - lo), 0.01), 0.99) if hi != lo else 0.5
    return float(x0 + w * math.log(u / (1 - u)))


def _rms(r: np.ndarray, fallback: float) -> float:
    return float(np.sqrt(np.mean(r ** 2))) if r.size >= 3 else fallback


def _band(popt, rx: np.ndarray, resid: np.ndarray, level: float, k: int = 11) -> tuple[float, float]:
    """log10 steps where the fitted curve is within ``level`` +- 1.96 sd (an inverse prediction band).

    sd combines the RMS of the ``k`` residuals nearest (in log step) to the crossing -- noise
    differs along a curve (an accuracy's binomial noise is largest mid-rise, nil at 1.0), and
    autocorrelated wiggles and the model's misfit both count -- with the uncertainty of the
    level itself, which is a share of the fitted rise: the residual RMS on the foot (fit below
    5 % of the rise) and on the top (above 95 %), weighted by the share."""
    lo, hi = popt[0], popt[1]
    xc = _inverse_sigmoid(level, popt)
    near = np.argsort(np.abs(rx - xc))[:k]
    sd_local = _rms(resid[near], 0.0)
    f = (_sigmoid(rx, *popt) - lo) / (hi - lo) if hi != lo else np.full(rx.shape, 0.5)
    u = min(max((level - lo) / (hi - lo), 0.0), 1.0) if hi != lo else 0.5
    sd = math.hypot(sd_local, (1 - u) * _rms(resid[f < 0.05], sd_local), u * _rms(resid[f > 0.95], sd_local))
    a, b = sorted(_inverse_sigmoid(level + d * 1.96 * sd, popt) for d in (-1, 1))
    return min(a, xc), max(b, xc)


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
    Measurement intervals (docs/science.md#events-run-classes-and-intervals): the steps where
    the fitted curve lies within the point's level +- 1.96 local residual sd (:func:`_band`),
    widened to the two evaluations that bracket the point and to the data's own crossing of
    the level (``threshold_event``), whichever reaches further. The fit covariance is used only to reject unreliable
    fits: on an autocorrelated curve it claims far too little.
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
        level = flo + (fhi - flo) * frac
        x_lo, x_hi = _band(popt, xs, resid, level)
        j = int(np.searchsorted(x, xe))           # the evaluations bracketing the point
        x_lo = min(x_lo, x[max(j - 1, 0)])
        x_hi = max(x_hi, x[min(j, x.size - 1)])
        seen = threshold_event(s, v, level, name="", signal="")   # where the data itself crosses
        if seen is not None and abs(math.log10(max(seen.step, 1)) - xe) < 1.0:
            x_lo, x_hi = min(x_lo, math.log10(max(seen.low, 0.5))), max(x_hi, math.log10(max(seen.high, 0.5)))
        events.append(Event(f"{name}_{label}", int(round(10 ** xe)), max(0, int(math.floor(10 ** x_lo))),
                            int(math.ceil(10 ** x_hi)), signal,
                            {"log10_step": xe, "extrapolated": bool(xe > x[-1]), "level": level * direction,
                             "interval": "inverse prediction band (fitted curve within level +- 1.96 "
                                         "local residual sd), the bracketing evaluations and the "
                                         "data's own crossing of the level"}))
    return Transition(signal, flo * direction, fhi * direction, x0, w, rmse, *events,
                      resid_x=tuple(xs.tolist()), resid=tuple(resid.tolist()))


#: losses below this are float32 rounding noise: a float32 loss near 0 is quantized in steps of
#: ~eps/2 = 6e-8 per example, so its log wanders by decades; 16 eps keeps that under ~3 %
LOSS_FLOOR = 16 * float(np.finfo(np.float32).eps)


def detect_spikes(steps, values, *, signal: str, name: str = "slingshot",
                  decades: float = 1.0, window: int = 11, floor: float = LOSS_FLOOR) -> list[Event]:
    """Loss spikes: log10(loss) above log10(max(running median, ``floor``)) by more than ``decades``.

    The floor (default :data:`LOSS_FLOOR`, 1.9e-6) keeps float32 rounding noise at the bottom
    of a converged loss from reading as spikes. Consecutive spiking samples form one event
    dated at the peak; its interval spans the spiking samples. Non-positive and non-finite
    values are ignored.
    """
    s, v, _ = clean(steps, values)
    keep = v > 0
    s, v = s[keep], v[keep]
    if s.size < window:
        return []
    lv = np.log10(v)
    resid = lv - np.maximum(running_median(lv, window), math.log10(floor))
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

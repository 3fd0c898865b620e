"""Induction-head formation, the loss bump around it, and a later fade of in-context learning.

Torch-free; reads the series an ``InductionProbe`` logs (``circuit/prefix_matching_max``,
``circuit/repeat_loss``, ``circuit/nonrepeat_loss``, ``circuit/icl_score``). Definitions in
docs/science.md#induction-heads-and-in-context-learning:

- ``induction_formation_onset`` / ``_midpoint`` / ``_end``: where the (3-sample running median of
  the) prefix-matching score last crosses 10 % / 50 % / 90 % of its rise from the early level
  (median of the first tenth of the probes) to the final level (median of the last tenth) and
  stays above. The step is interpolated between the two probes that bracket the crossing; the
  interval is those bracketing probes (widened to the raw series' bracketing probes). Reported
  only when the score rises by >= ``min_pm_rise`` and, where the repeat loss was logged, the
  repeat loss falls by >= ``min_loss_drop`` x; the evidence holds both and the plateau before.
- ``induction_bump``: the non-repeat loss rises above its level before the onset (median of the
  last quarter of the probes before it) by more than ``min_bump`` nats and 3 noise sigmas, between
  the onset and one formation width after its end (Olsson et al.'s bump); step = the highest probe,
  interval = the probes around it above half the bump height.
- ``icl_fade`` (a regression event, Singh et al. 2023): after formation the ICL score (late minus
  early position loss, negative = in-context learning) gives back >= ``fade_frac`` of its gain
  and stays there until the end of the trace.

Example:
    >>> import numpy as np
    >>> from phasewatch.analysis.memtrace import MemoryTrace
    >>> s = np.arange(0, 3000, 50)
    >>> pm = 0.05 + 0.8 / (1 + np.exp(-(s - 2000) / 60)); rl = 4.1 - 3.5 * (pm - 0.05) / 0.8
    >>> t = MemoryTrace({"circuit/prefix_matching_max": (s, pm), "circuit/repeat_loss": (s, rl)})
    >>> [e.step for e in induction_events(t)[0]]
    [1865, 2000, 2135]
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .events import Event
from .signals import clean, running_median

__all__ = ["InductionConfig", "induction_events", "PREFIX_MATCHING", "REPEAT_LOSS",
           "NONREPEAT_LOSS", "ICL_SCORE"]

PREFIX_MATCHING = "circuit/prefix_matching_max"
REPEAT_LOSS = "circuit/repeat_loss"
NONREPEAT_LOSS = "circuit/nonrepeat_loss"
ICL_SCORE = "circuit/icl_score"


@dataclass(frozen=True)
class InductionConfig:
    """Thresholds of the induction detectors (see the module docstring)."""

    min_pm_rise: float = 0.3
    min_loss_drop: float = 3.0
    min_bump: float = 0.02
    fade_frac: float = 0.5
    smooth: int = 3


def _series(trace, name):
    if name not in trace.names():
        return None
    s, v, _ = clean(*trace.series(name))
    return (s, v) if s.size >= 5 else None


def _levels(v: np.ndarray) -> tuple[float, float]:
    k = max(2, v.size // 10)
    return float(np.median(v[:k])), float(np.median(v[-k:]))


def _crossing(s, v, sm, target: float, up: bool = True) -> tuple[float, int, int] | None:
    """Last crossing of ``target`` by ``sm`` after which it stays beyond: (step, low, high)."""
    beyond = sm >= target if up else sm <= target
    if not beyond[-1]:
        return None
    before = np.flatnonzero(~beyond)
    if before.size == 0:
        return None
    i = int(before[-1]) + 1
    a, b = sm[i - 1], sm[i]
    step = s[i - 1] + (target - a) / (b - a) * (s[i] - s[i - 1]) if b != a else float(s[i])
    raw = np.flatnonzero(~(v >= target if up else v <= target))
    j = int(raw[-1]) + 1 if raw.size and raw[-1] + 1 < v.size else i
    return float(step), int(s[min(i, j) - 1]), int(s[max(i, j)])


def _formation(pm, rl, cfg: InductionConfig) -> tuple[list[Event], str | None]:
    s, v = pm
    lo, hi = _levels(v)
    if hi - lo < cfg.min_pm_rise:
        return [], f"prefix-matching score rose {hi - lo:.3f} < {cfg.min_pm_rise}: no induction heads"
    evidence = {"prefix_matching_early": lo, "prefix_matching_final": hi}
    if rl is not None:
        r_lo, r_hi = _levels(rl[1])
        drop = r_lo / max(r_hi, 1e-12)
        evidence.update(repeat_loss_early=r_lo, repeat_loss_final=r_hi, repeat_loss_drop=drop)
        if drop < cfg.min_loss_drop:
            return [], (f"prefix-matching rose but the repeat loss fell only {drop:.2f}x "
                        f"< {cfg.min_loss_drop}x: no induction formation")
    sm = running_median(v, cfg.smooth)
    out = []
    for label, frac in (("onset", 0.1), ("midpoint", 0.5), ("end", 0.9)):
        hit = _crossing(s, v, sm, lo + frac * (hi - lo))
        if hit is None:
            return [], f"prefix-matching score does not stay above {frac:.0%} of its rise"
        step, low, high = hit
        out.append(Event(f"induction_formation_{label}", int(round(step)), low, high,
                         PREFIX_MATCHING, {**evidence, "level": lo + frac * (hi - lo)}))
    if rl is not None:  # the plateau: how long the repeat loss sat near its early level
        rs, rv = rl
        rsm = running_median(rv, cfg.smooth)
        pre = rs <= out[0].step
        near = np.abs(rsm - r_lo) <= 0.05 * abs(r_lo)
        start = rs[pre & near][0] if (pre & near).any() else None
        out[1] = Event(out[1].name, out[1].step, out[1].low, out[1].high, out[1].signal,
                       {**out[1].evidence, "plateau_start": None if start is None else int(start),
                        "plateau_level": r_lo})
    return out, None


def _bump(nrl, onset: Event, end: Event, cfg: InductionConfig) -> Event | None:
    s, v = nrl
    pre = s < onset.low
    if pre.sum() < 3:
        return None
    tail = v[pre][-max(3, pre.sum() // 4):]
    base = float(np.median(tail))
    d = np.diff(v[pre])
    noise = 1.4826 * float(np.median(np.abs(d - np.median(d)))) / np.sqrt(2)
    win = np.flatnonzero((s >= onset.low) & (s <= end.high + (end.high - onset.low)))
    if win.size == 0:
        return None
    i = int(win[np.argmax(v[win])])  # raw samples: a median filter would clip a narrow bump
    rise = float(v[i] - base)
    if rise < max(cfg.min_bump, 3 * noise):
        return None
    above = v >= base + rise / 2
    a, b = i, i
    while a > win[0] and above[a - 1]:
        a -= 1
    while b < s.size - 1 and above[b + 1]:
        b += 1
    return Event("induction_bump", int(s[i]), int(s[a]), int(s[b]), NONREPEAT_LOSS,
                 {"before": base, "peak": float(v[i]), "rise": rise, "noise": noise})


def _fade(icl, onset: Event, cfg: InductionConfig) -> Event | None:
    s, v = icl
    sm = running_median(v, cfg.smooth)
    pre, post = s < onset.low, s >= onset.step
    if pre.sum() < 2 or post.sum() < 3:
        return None
    before = float(np.median(sm[pre]))
    k = int(np.flatnonzero(post)[np.argmin(sm[post])])
    gain = before - float(sm[k])
    if gain <= 0:
        return None
    level = float(sm[k]) + cfg.fade_frac * gain
    hit = _crossing(s[k:], v[k:], sm[k:], level)
    if hit is None:
        return None
    step, low, high = hit
    return Event("icl_fade", int(round(step)), low, high, ICL_SCORE,
                 {"before_formation": before, "best": float(sm[k]), "best_step": int(s[k]),
                  "final": float(sm[-1]), "fade_frac": cfg.fade_frac})


def induction_events(trace, config: InductionConfig = InductionConfig()) -> tuple[list[Event], list[str], list[str]]:
    """(events, flags, notes) for one trace; empty when the induction series are absent."""
    pm = _series(trace, PREFIX_MATCHING)
    if pm is None:
        return [], [], []
    events, note = _formation(pm, _series(trace, REPEAT_LOSS), config)
    if note:
        return [], [], [note]
    flags = ["induction_heads"]
    onset, end = events[0], events[-1]
    nrl = _series(trace, NONREPEAT_LOSS)
    bump = _bump(nrl, onset, end, config) if nrl is not None else None
    if bump is not None:
        events.append(bump)
    icl = _series(trace, ICL_SCORE)
    fade = _fade(icl, onset, config) if icl is not None else None
    if fade is not None:
        events.append(fade)
        flags.append("icl_fade")
    return events, flags, []

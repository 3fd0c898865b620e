"""Run class (Liu et al. 2022) and run-level flags, budget-aware.

Rules (all thresholds live in :class:`ClassifyConfig`):

| class | rule |
|---|---|
| comprehension | train and val reach ``threshold`` and ``t_val / t_train < grok_ratio`` (or val first) |
| grokking | both reach and ``t_val / t_train >= grok_ratio`` (``gap_rule="absolute"``: ``t_val - t_train >= min_gap_steps``, Liu's rule) |
| memorization | only train reaches; ``censored`` when ``budget < censor_ratio * t_train`` or val still rising at the end ("not yet") |
| confusion | neither reaches; ``censored`` when train is still rising at the end |
| unknown | no train accuracy or no val accuracy series (insufficient data) |

"Reaches" is dated by interpolation between evaluations (``events.threshold_event``); train
accuracy counts from its first reach even when it falls later, val accuracy must reach and
stay. The analyzer reports this verdict at ``threshold`` and at Liu et al.'s 0.9
(``verdicts``); docs/science.md#events-run-classes-and-intervals gives the reasons.

Flags: ``diverged`` (a NaN/inf in a loss or accuracy), ``slingshot`` (train loss spikes
of >= ``spike_decades`` above the running median, floored at the float32 noise level),
``inversion`` / ``forgetting`` (train accuracy reached the threshold, then fell
``ungrok_drop`` below it and ended there, with / without val reaching it: corrupted labels
given up for the rule, or memorization undone), ``ungrokking`` (val reached the
threshold, then fell ``ungrok_drop`` below it and ended there), ``semi_grokking`` (val
rose by >= ``semi_min_rise`` after memorization, with the fitted midpoint later than 2 x
t_train, and ended on a plateau below the threshold: not while still rising).

Example:
    >>> classify_run(100, 2000, budget=5000).run_class
    'grokking'
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from .signals import log10_step, running_median

__all__ = ["ClassifyConfig", "RunClass", "rule_text", "classify_run", "verdict_at", "still_rising"]

CLASSES = ("comprehension", "grokking", "memorization", "confusion", "unknown")


@dataclass(frozen=True)
class ClassifyConfig:
    """Thresholds of the run classification and flags (see module docstring)."""

    threshold: float = 0.99
    gap_rule: str = "ratio"
    grok_ratio: float = 5.0
    min_gap_steps: int = 1000
    censor_ratio: float = 10.0
    rising_delta: float = 0.02
    spike_decades: float = 1.0
    semi_min_rise: float = 0.2
    ungrok_drop: float = 0.1
    hysteresis: float = 0.02

    def __post_init__(self):
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.gap_rule not in ("ratio", "absolute"):
            raise ValueError(f"gap_rule must be 'ratio' or 'absolute', got {self.gap_rule!r}")
        if self.grok_ratio <= 1.0:
            raise ValueError(f"grok_ratio must be > 1, got {self.grok_ratio}")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RunClass:
    """A class with the rule that gave it; ``ambiguous`` when the measurement intervals of the
    crossing steps straddle the rule's cutoff (the class could go either way)."""

    run_class: str
    censored: bool
    reason: str
    gap_steps: int | None = None
    gap_ratio: float | None = None
    gap_range: tuple | None = None
    ambiguous: bool = False


def rule_text(config: ClassifyConfig) -> str:
    """The class rule in words, e.g. for analysis.json ``verdicts[].rule``."""
    gap = (f"t_val / t_train >= {config.grok_ratio:g}" if config.gap_rule == "ratio"
           else f"t_val - t_train >= {config.min_gap_steps}")
    return (f"reach = running median of 5 evaluations >= {config.threshold:g} (train: first reach; "
            f"val: reach and stay, hysteresis {config.hysteresis:g}), crossing steps interpolated "
            f"between evaluations; both reach: grokking if {gap}, else comprehension; only train: "
            "memorization; neither: confusion")


def _gap(t_train, t_val, gap_rule):
    return float(max(t_val, 1) / max(t_train, 1)) if gap_rule == "ratio" else float(t_val - t_train)


def still_rising(steps, values, delta: float = 0.02, tail_decades: float = 0.1) -> bool:
    """True when the last ``tail_decades`` of the trace sit ``delta`` above the 0.2 decades before."""
    steps = np.asarray(steps)
    values = np.asarray(values, dtype=float)
    if steps.size < 6:
        return False
    x = log10_step(steps)
    end = x[-1]
    tail = x >= end - tail_decades
    before = (x < end - tail_decades) & (x >= end - tail_decades - 0.2)
    if tail.sum() < 2 or before.sum() < 2:
        n = steps.size
        tail = np.arange(n) >= n - max(2, n // 10)
        before = (np.arange(n) >= n - 3 * max(2, n // 10)) & ~tail
    first = max(0, int(np.flatnonzero(before | tail)[0]) - 5)   # smooth only the end
    sm = running_median(values[first:], 5)
    tail, before = tail[first:], before[first:]
    return float(np.median(sm[tail]) - np.median(sm[before])) > delta


def classify_run(t_train: int | None, t_val: int | None, *, budget: int,
                 have_train: bool = True, have_val: bool = True,
                 val_rising: bool = False, train_rising: bool = False,
                 config: ClassifyConfig = ClassifyConfig(),
                 train_range: tuple | None = None, val_range: tuple | None = None) -> RunClass:
    """Liu et al. class from the steps at which train / val reach the threshold (or None).

    ``train_range`` / ``val_range``: measurement intervals ``(low, high)`` of the two steps;
    the gap is then reported with its range and ``ambiguous`` when the range straddles the cutoff.
    """
    thr = config.threshold
    if not have_train:
        return RunClass("unknown", False, "insufficient data for run class: no train accuracy")
    if not have_val:
        return RunClass("unknown", False, "insufficient data for run class: no val accuracy")
    if t_train is not None and t_val is not None:
        gap = int(t_val - t_train)
        ratio = float(max(t_val, 1) / max(t_train, 1))
        if config.gap_rule == "ratio":
            grok = ratio >= config.grok_ratio
            rule = f"t_val/t_train = {ratio:.2f} {'>=' if grok else '<'} {config.grok_ratio}"
        else:
            grok = gap >= config.min_gap_steps
            rule = f"t_val - t_train = {gap} {'>=' if grok else '<'} {config.min_gap_steps}"
        cls = "grokking" if grok else "comprehension"
        rng, ambiguous = None, False
        if train_range is not None and val_range is not None:
            rng = (_gap(train_range[1], val_range[0], config.gap_rule),
                   _gap(train_range[0], val_range[1], config.gap_rule))
            cut = config.grok_ratio if config.gap_rule == "ratio" else config.min_gap_steps
            ambiguous = rng[0] < cut <= rng[1]
            rule += (f" (range {rng[0]:.3g}-{rng[1]:.3g} from the measurement intervals"
                     + ("; ambiguous: it straddles the cutoff)" if ambiguous else ")"))
        return RunClass(cls, False, f"train and val reach {thr} at {t_train} / {t_val}; {rule}",
                        gap, ratio, rng, ambiguous)
    if t_val is not None:  # val without train ever reaching: labels the learned rule contradicts
        return RunClass("comprehension", False,
                        f"val reaches {thr} at {t_val}; train never does (inconsistent labels?)")
    if t_train is not None:
        short = budget < config.censor_ratio * max(t_train, 1)
        censored = short or val_rising
        why = []
        if short:
            why.append(f"budget {budget} < {config.censor_ratio:g} x t_train {t_train}")
        if val_rising:
            why.append("val still rising at the end")
        reason = f"train reaches {thr} at {t_train}; val does not within {budget} steps"
        if censored:
            reason += " (censored, not yet: " + "; ".join(why) + ")"
        return RunClass("memorization", censored, reason)
    reason = f"neither train nor val reaches {thr} within {budget} steps"
    if train_rising:
        reason += " (censored, not yet: train still rising at the end)"
    return RunClass("confusion", train_rising, reason)


def verdict_at(thr: float, events: dict, have: set, rising: dict, budget: int | None,
               config: ClassifyConfig) -> tuple[RunClass, dict]:
    """The class at threshold ``thr`` from the ``memorization`` / ``generalization`` events
    (interpolated steps, measurement intervals) and its ``verdicts[]`` record for analysis.json.

    ``have``: the accuracy series present (``"train"``, ``"val"``); ``rising``: whether each
    still rises at the end.
    """
    cfg = replace(config, threshold=thr)
    mem, gen = events.get("memorization"), events.get("generalization")
    rc = classify_run(mem.step if mem else None, gen.step if gen else None, budget=budget or 0,
                      have_train="train" in have, have_val="val" in have,
                      val_rising=rising["val"], train_rising=rising["train"], config=cfg,
                      train_range=(mem.low, mem.high) if mem else None,
                      val_range=(gen.low, gen.high) if gen else None)
    return rc, {"threshold": thr, "class": rc.run_class, "censored": rc.censored,
                "t_train": mem.step if mem else None, "t_val": gen.step if gen else None,
                "gap": rc.gap_ratio if config.gap_rule == "ratio" else rc.gap_steps,
                "gap_range": list(rc.gap_range) if rc.gap_range else None,
                "ambiguous": rc.ambiguous, "reason": rc.reason, "rule": rule_text(cfg)}

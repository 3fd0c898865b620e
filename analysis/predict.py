"""Early prediction: from the first ``horizon`` steps, will the run generalize, and when?

See ``docs/science.md#early-prediction`` for the features, the rule, how it was tuned and how
it scores on conditions it was not tuned on.

Features (``early_features``), all from steps ``<= horizon``; a feature whose series is
missing is None:
- ``train_acc`` / ``val_acc``: median of the last 3 evaluations; ``t_mem`` / ``t_gen_seen``:
  the analyzer's threshold event (0.99) on train / val accuracy; ``val_slope`` per step;
- ``loss_drop``: decades the train loss fell; ``loss_slope``: d log10 loss / d log10 step
  over the last half of the window; ``osc``: residual std (decades) of the log train loss
  around a quadratic trend (Notsawo et al. 2023's spectral signature, reduced to its size);
- ``val_loss_fall``: decades the val loss has come down from its peak; ``val_loss_slope``
  (d log10 / d log10 step, last half); ``t_val_peak``: step of the val-loss peak;
- ``norm_ratio``: ``weights/sum_sq`` at the horizon / at the start; ``norm_slope``
  (d ln sum_sq per 1,000 steps, last half); ``norm_from_peak``: ln(peak / current);
- ``n_key_freqs``, ``excluded_ratio`` (log10 live excluded loss / train loss),
  ``restricted_fall`` (decades the live restricted loss fell): from the circuit probes
  evaluated with the key frequencies known *at that step* (``circuit/*_current_k``); the
  final-K series need the end of the run and are never read here.

Rule (``predict_early``): val accuracy already >= ``val_done`` -> generalizes; the train loss
fell less than ``min_drop`` decades -> no (confusion); otherwise generalizes iff every
``(feature, op, threshold)`` of ``conditions`` holds. ``TUNED`` holds the shipped rules,
one per horizon, their conditions and ``gen_ratio`` chosen on the tuning conditions only
(``scripts/eval_predictor.py --tune``); ``rule_for(horizon)`` picks the nearest.
When: ``t_gen ~= gen_ratio * t_ref``, with ``t_ref`` the val-loss peak when the window shows
the val loss >= ``PEAK_FALL`` decades below a peak, else the horizon (a lower bound); already
generalized -> that step.

Example:
    >>> import numpy as np
    >>> from phasewatch.analysis.memtrace import MemoryTrace
    >>> s = np.arange(0, 801, 20)
    >>> t = MemoryTrace({"train/acc": (s, np.minimum(s / 140, 1)), "val/acc": (s, 0 * s),
    ...                  "train/loss": (s, 4 * np.exp(-s / 60) + 1e-3),
    ...                  "val/loss": (s, 4 + 8 * np.exp(-((s - 400) / 200) ** 2))})
    >>> p = predict_early(t, horizon=800, rule=EarlyRule(conditions=(("val_loss_fall", ">=", 0.05),)))
    >>> p.generalizes, p.features["t_val_peak"]
    (True, 380)
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np

from .events import threshold_event
from .signals import clean, running_median

__all__ = ["EarlyRule", "Prediction", "early_features", "predict_early", "reference_step", "rule_for",
           "TUNED", "FEATURES", "MIN_HORIZON"]

MIN_HORIZON = 60
PEAK_FALL = 0.01          # decades below its peak before the val loss counts as having peaked
FEATURES = ("train_acc", "val_acc", "val_slope", "loss_drop", "loss_slope", "osc", "val_loss_fall",
            "val_loss_slope", "norm_ratio", "norm_slope", "norm_from_peak", "n_key_freqs",
            "excluded_ratio", "restricted_fall")
_OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class EarlyRule:
    """Gates and tuned conditions of the early rule (module docstring); ``TUNED`` holds the
    shipped ones."""

    conditions: tuple = ()
    val_done: float = 0.5
    min_drop: float = 0.3
    gen_ratio: float = 5.0
    tuned_horizon: int = 800

    def __post_init__(self):
        for c in self.conditions:
            if len(c) != 3 or c[0] not in FEATURES or c[1] not in _OPS:
                raise ValueError(f"condition {c!r}: want (feature, '>=' or '<=', threshold) "
                                 f"with feature in {FEATURES}")
        if not self.gen_ratio >= 1:
            raise ValueError(f"gen_ratio must be >= 1, got {self.gen_ratio}")

    def describe(self) -> str:
        conds = " and ".join(f"{f} {op} {t:g}" for f, op, t in self.conditions) or "always"
        return (f"val_acc >= {self.val_done:g} -> yes; train loss fell < {self.min_drop:g} decades "
                f"-> no; else yes iff {conds}; t_gen = {self.gen_ratio:g} x val-loss peak step "
                f"(tuned at horizon {self.tuned_horizon})")

    def to_dict(self) -> dict:
        return {"conditions": [list(c) for c in self.conditions], "val_done": self.val_done,
                "min_drop": self.min_drop, "gen_ratio": self.gen_ratio,
                "tuned_horizon": self.tuned_horizon, "text": self.describe()}


@dataclass(frozen=True)
class Prediction:
    """``generalizes`` is None when the features the rule needs are missing."""

    generalizes: bool | None
    t_gen: int | None
    reason: str
    features: dict = field(default_factory=dict)


def _cut(trace, name, horizon):
    """``(steps, values)`` of ``name`` (or its common alias, e.g. ``val_acc``) up to ``horizon``."""
    from .names import ROLES, resolve
    have = trace.names()
    role = next((r for r, n in ROLES.items() if n == name), None)
    name = resolve(role, have) if role else (name if name in have else None)
    if name is None:
        return None
    s, v, _ = clean(*trace.series(name))
    keep = s <= horizon
    return (s[keep], v[keep]) if keep.sum() >= 3 else None


def _half_slope(x, y):
    """Least-squares slope of ``y`` on ``x`` over the last half of the window (None if < 3 points)."""
    half = x >= x[-1] / 2 if x[-1] > 0 else np.ones(x.size, bool)
    return float(np.polyfit(x[half], y[half], 1)[0]) if half.sum() >= 3 else None


def _log10_pos(s, v):
    pos = v > 0
    return s[pos], np.log10(v[pos])


def _acc_features(trace, horizon, threshold):
    f = {}
    for key, name, ev in (("train", "train/acc", "t_mem"), ("val", "val/acc", "t_gen_seen")):
        got = _cut(trace, name, horizon)
        f[f"{key}_acc"] = None if got is None else float(np.median(got[1][-3:]))
        e = None if got is None else threshold_event(*got, threshold, name=ev, signal=name,
                                                      first_reach=key == "train")  # as the analyzer
        f[ev] = None if e is None else int(e.step)
        if key == "val":
            f["val_slope"] = None if got is None or got[0].size < 4 else _half_slope(*got)
    return f


def _loss_features(trace, horizon):
    f = dict.fromkeys(("loss_drop", "loss_slope", "osc", "val_loss_fall", "val_loss_slope",
                       "t_val_peak"))
    lo = _cut(trace, "train/loss", horizon)
    if lo is not None:
        s, lv = _log10_pos(*lo)
        if lv.size >= 3:
            f["loss_drop"] = float(lv[0] - np.median(lv[-3:]))
            f["loss_slope"] = _half_slope(np.log10(np.maximum(s, 1)), lv)
        w = s >= horizon / 4
        if w.sum() >= 8:
            x, y = s[w].astype(float), lv[w]
            f["osc"] = float(np.std(y - np.polyval(np.polyfit(x, y, 2), x)))
    vl = _cut(trace, "val/loss", horizon)
    if vl is not None:
        s, lv = _log10_pos(*vl)
        if lv.size >= 3:
            sm = running_median(lv, 3)
            peak = int(np.argmax(sm))
            f["val_loss_fall"] = float(sm[peak] - np.median(lv[-3:]))
            f["t_val_peak"] = int(s[peak])
            f["val_loss_slope"] = _half_slope(np.log10(np.maximum(s, 1)), lv)
    return f


def _norm_circuit_features(trace, horizon):
    f = dict.fromkeys(("norm_ratio", "norm_slope", "norm_from_peak", "n_key_freqs",
                       "excluded_ratio", "restricted_fall"))
    nm = _cut(trace, "weights/sum_sq", horizon)
    if nm is not None and nm[1][0] > 0:
        s, v = nm
        f["norm_ratio"] = float(v[-1] / v[0])
        f["norm_from_peak"] = float(np.log(v.max() / v[-1]))
        f["norm_slope"] = _half_slope(s / 1000.0, np.log(v))
    nk = _cut(trace, "circuit/n_key_freqs", horizon)
    f["n_key_freqs"] = None if nk is None else float(nk[1][-1])
    ex, tl = _cut(trace, "circuit/excluded_loss_current_k", horizon), _cut(trace, "train/loss", horizon)
    if ex is not None and tl is not None and ex[1][-1] > 0:
        t_loss = np.interp(ex[0][-1], *tl)
        f["excluded_ratio"] = float(np.log10(ex[1][-1] / t_loss)) if t_loss > 0 else None
    rs = _cut(trace, "circuit/restricted_loss_current_k", horizon)
    if rs is not None and rs[1][0] > 0 and rs[1][-1] > 0:
        f["restricted_fall"] = float(np.log10(rs[1][0] / rs[1][-1]))
    return f


def early_features(trace, horizon: int = 400, threshold: float = 0.99) -> dict:
    """Features of the first ``horizon`` steps of a trace (reader API); missing ones are None."""
    if horizon < MIN_HORIZON:
        raise ValueError(f"horizon must be >= {MIN_HORIZON} steps, got {horizon}")
    return {"horizon": int(horizon), **_acc_features(trace, horizon, threshold),
            **_loss_features(trace, horizon), **_norm_circuit_features(trace, horizon)}


def reference_step(f: dict, horizon: int) -> tuple[int, bool]:
    """The clock of the timing estimate: ``(step of the val-loss peak, True)`` when the window
    shows the val loss coming down from a peak, else ``(horizon, False)`` (the peak, if any,
    is still ahead: the estimate is then a lower bound)."""
    peak = f.get("t_val_peak")
    if peak is not None and peak < horizon and (f.get("val_loss_fall") or 0.0) >= PEAK_FALL:
        return int(peak), True
    return int(horizon), False


def _when(f: dict, rule: EarlyRule, horizon: int) -> tuple[int, str]:
    if f.get("t_gen_seen") is not None:
        return f["t_gen_seen"], "already generalized"
    ref, seen = reference_step(f, horizon)
    t = int(round(rule.gen_ratio * ref, -1))
    return t, (f"{rule.gen_ratio:g} x val-loss peak {ref}" if seen else
               f"no val-loss peak yet: at least {rule.gen_ratio:g} x horizon {ref}")


# The shipped rules, one per tuning horizon, each chosen on the tuning conditions only
# (``scripts/eval_predictor.py --tune --horizon H``); see docs/science.md#early-prediction.
TUNED = (EarlyRule(conditions=(("osc", "<=", 0.0441),), gen_ratio=10.9, tuned_horizon=400),
         EarlyRule(conditions=(("val_loss_slope", "<=", 0.266),), gen_ratio=10.55, tuned_horizon=800))


def rule_for(horizon: int) -> EarlyRule:
    """The shipped rule tuned at the horizon nearest to ``horizon`` (ties: the shorter)."""
    return min(TUNED, key=lambda r: (abs(r.tuned_horizon - horizon), r.tuned_horizon))


def predict_early(trace, horizon: int = 400, rule: EarlyRule | None = None,
                  features: dict | None = None) -> Prediction:
    """Apply ``rule`` (default: ``rule_for(horizon)``) to the first ``horizon`` steps of
    ``trace`` (or to ready ``features``)."""
    rule = rule_for(horizon) if rule is None else rule
    f = features if features is not None else early_features(trace, horizon)
    va, tr, drop = f.get("val_acc"), f.get("train_acc"), f.get("loss_drop")
    if va is not None and va >= rule.val_done:
        t, how = _when(f, rule, horizon)
        return Prediction(True, t, f"val acc {va:.2f} >= {rule.val_done:g} already; t_gen: {how}", f)
    if drop is None:
        return Prediction(None, None, "no train/loss in the window: cannot tell", f)
    if drop < rule.min_drop and (tr is None or tr < 0.5):
        return Prediction(False, None, f"train loss fell only {drop:.2f} decades (< {rule.min_drop:g}; "
                                       "confusion)", f)
    missing = [c[0] for c in rule.conditions if f.get(c[0]) is None]
    if missing:
        return Prediction(None, None, f"cannot tell: no {', '.join(missing)} in the window", f)
    held = [(c, _OPS[c[1]](f[c[0]], c[2])) for c in rule.conditions]
    gen = all(ok for _, ok in held)
    why = "; ".join(f"{name} {f[name]:.3g} {op if ok else 'not ' + op} {thr:g}"
                    for (name, op, thr), ok in held)
    if not gen:
        return Prediction(False, None, why, f)
    t, how = _when(f, rule, horizon)
    return Prediction(True, t, f"{why}; t_gen: {how}", f)

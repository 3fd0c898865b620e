"""Early prediction: from the first ``horizon`` steps, will the run generalize, and roughly when?

Features (``early_features``), all from steps ``<= horizon``:
- ``loss_drop`` (decades the train loss fell), ``train_acc`` / ``val_acc`` (median of the
  last 3 samples), ``t_mem`` (the analyzer's ``threshold_event`` on train accuracy);
- ``norm_ratio``: ``weights/sum_sq`` at the horizon / at the first sample (Omnigrok, Liu et al.
  2023: generalization comes as weight decay pulls the norm down; a memorizing run without
  enough decay inflates it), ``norm_slope`` (d log sum_sq / d 1000 steps over the last half);
- ``osc``, ``hf_frac``: the spectral signature of the train loss (Notsawo et al. 2023): the
  log10 loss over ``[horizon/4, horizon]`` minus a quadratic trend, its residual std
  (decades) and the share of its power in the upper half of the spectrum.

Rule (``predict_early``, fixed thresholds, nothing fitted on evaluation runs):
1. val accuracy already >= ``val_done`` -> generalizes (comprehension-like);
2. train loss fell < ``min_drop`` decades and train acc < 0.5 -> no (confusion);
3. with ``weights/sum_sq``: ``norm_ratio <= max_norm_ratio`` -> generalizes, else no
   (memorization); without it: ``osc >= min_osc`` -> generalizes.
When: val accuracy already >= ``val_rising`` and rising -> linear extrapolation of its last
half-window to 0.99; else ``t_gen ~= t_mem * gen_ratio`` (``gen_ratio`` is a prior; ``evaluate_runs`` uses the
median ``t_gen / t_mem`` of the *other* generalizing runs: leave-one-out).

Example:
    >>> import numpy as np
    >>> from phasewatch.analysis.memtrace import MemoryTrace
    >>> s = np.arange(0, 401, 20)
    >>> t = MemoryTrace({"train/acc": (s, np.minimum(s / 140, 1)), "val/acc": (s, 0 * s),
    ...                  "train/loss": (s, 4 * np.exp(-s / 60) + 1e-3),
    ...                  "weights/sum_sq": (s, 3800 + 0.5 * s)})
    >>> p = predict_early(t, horizon=400); p.generalizes, p.t_gen
    (True, 2800)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .events import threshold_event
from .signals import clean

__all__ = ["EarlyRule", "Prediction", "early_features", "predict_early", "evaluate_runs",
           "format_eval_table"]


@dataclass(frozen=True)
class EarlyRule:
    """Fixed thresholds of the early rule (see module docstring)."""

    val_done: float = 0.5
    min_drop: float = 0.3
    max_norm_ratio: float = 1.5
    min_osc: float = 0.05
    val_rising: float = 0.05
    gen_ratio: float = 20.0

    def __post_init__(self):
        if not self.max_norm_ratio > 0:
            raise ValueError(f"max_norm_ratio must be > 0, got {self.max_norm_ratio}")
        if not self.gen_ratio >= 1:
            raise ValueError(f"gen_ratio must be >= 1, got {self.gen_ratio}")


@dataclass(frozen=True)
class Prediction:
    generalizes: bool
    t_gen: int | None
    reason: str
    features: dict = field(default_factory=dict)


def _cut(trace, name, horizon):
    if name not in trace.names():
        return None
    s, v, _ = clean(*trace.series(name))
    keep = s <= horizon
    return (s[keep], v[keep]) if keep.sum() >= 3 else None


def early_features(trace, horizon: int = 400, threshold: float = 0.99) -> dict:
    """Features of the first ``horizon`` steps (reader API trace); missing ones are None."""
    if horizon < 60:
        raise ValueError(f"horizon must be >= 60 steps, got {horizon}")
    f: dict = {"horizon": int(horizon)}
    tr, va = _cut(trace, "train/acc", horizon), _cut(trace, "val/acc", horizon)
    f["train_acc"] = None if tr is None else float(np.median(tr[1][-3:]))
    f["val_acc"] = None if va is None else float(np.median(va[1][-3:]))
    e = None if tr is None else threshold_event(*tr, threshold, name="memorization", signal="train/acc")
    f["t_mem"] = None if e is None else int(e.step)
    ev = None if va is None else threshold_event(*va, threshold, name="generalization", signal="val/acc")
    f["t_gen_seen"] = None if ev is None else int(ev.step)
    f["val_slope"] = None
    if va is not None and va[0].size >= 4:
        half = va[0] >= va[0][-1] / 2
        if half.sum() >= 3:
            f["val_slope"] = float(np.polyfit(va[0][half], va[1][half], 1)[0])  # per step
    lo = _cut(trace, "train/loss", horizon)
    f["loss_drop"] = f["osc"] = f["hf_frac"] = None
    if lo is not None:
        s, v = lo
        pos = v > 0
        s, lv = s[pos], np.log10(v[pos])
        if lv.size >= 3:
            f["loss_drop"] = float(lv[0] - np.median(lv[-3:]))
        w = s >= horizon / 4
        if w.sum() >= 8:
            x, y = s[w].astype(float), lv[w]
            resid = y - np.polyval(np.polyfit(x, y, 2), x)
            f["osc"] = float(np.std(resid))
            power = np.abs(np.fft.rfft(resid - resid.mean())) ** 2
            total = float(power[1:].sum())
            f["hf_frac"] = float(power[1 + (power.size - 1) // 2:].sum() / total) if total > 0 else 0.0
    nm = _cut(trace, "weights/sum_sq", horizon)
    f["norm_ratio"] = f["norm_slope"] = None
    if nm is not None and nm[1][0] > 0:
        s, v = nm
        f["norm_ratio"] = float(v[-1] / v[0])
        half = s >= s[-1] / 2
        if half.sum() >= 3:
            f["norm_slope"] = float(np.polyfit(s[half] / 1000.0, np.log(v[half]), 1)[0])
    return f


def predict_early(trace, horizon: int = 400, rule: EarlyRule = EarlyRule(),
                  features: dict | None = None) -> Prediction:
    """Apply the fixed rule to the first ``horizon`` steps of ``trace``."""
    f = features if features is not None else early_features(trace, horizon)

    def when(gen: bool) -> int | None:
        if not gen:
            return None
        if f.get("t_gen_seen") is not None:
            return f["t_gen_seen"]
        va, slope = f.get("val_acc"), f.get("val_slope")
        if va is not None and va >= rule.val_rising and slope and slope > 0:
            return int(round((horizon + (0.99 - va) / slope) / 10.0) * 10)  # linear extrapolation
        base = f.get("t_mem") or horizon
        return int(round(base * rule.gen_ratio / 10.0) * 10)

    va, tr = f.get("val_acc"), f.get("train_acc")
    if va is not None and va >= rule.val_done:
        return Prediction(True, when(True), f"val acc {va:.2f} >= {rule.val_done} already", f)
    drop = f.get("loss_drop")
    if drop is not None and drop < rule.min_drop and (tr is None or tr < 0.5):
        return Prediction(False, None, f"train loss fell only {drop:.2f} decades (confusion)", f)
    nr = f.get("norm_ratio")
    if nr is not None:
        gen = nr <= rule.max_norm_ratio
        return Prediction(gen, when(gen), f"weight norm ratio {nr:.2f} {'<=' if gen else '>'} "
                                          f"{rule.max_norm_ratio}", f)
    osc = f.get("osc")
    if osc is not None:
        gen = osc >= rule.min_osc
        return Prediction(gen, when(gen), f"loss oscillation {osc:.3f} {'>=' if gen else '<'} "
                                          f"{rule.min_osc} decades", f)
    return Prediction(False, None, "insufficient early data", f)


def evaluate_runs(dirs: dict, horizon: int = 400, rule: EarlyRule = EarlyRule()) -> list[dict]:
    """Predict each run (``{label: run_dir}``) from its first ``horizon`` steps; compare with the
    offline analysis of the whole run. ``gen_ratio`` is leave-one-out (other runs only)."""
    from dataclasses import replace

    from .analyzer import AnalysisConfig, analyze_trace
    from .store_read import load_run
    rows = []
    for label, d in dirs.items():
        with load_run(d) as run:
            res = analyze_trace(run, AnalysisConfig(phases=False, memorization=False), run=str(d))
            feats = early_features(run, horizon)
        gen = res.event("generalization")
        mem = res.event("memorization")
        rows.append({"label": label, "dir": str(d), "run_class": res.run_class, "budget": res.budget,
                     "t_mem": None if mem is None else mem.step,
                     "t_gen": None if gen is None else gen.step, "features": feats})
    for r in rows:
        others = [o["t_gen"] / o["t_mem"] for o in rows if o is not r and o["t_gen"] and o["t_mem"]
                  and o["t_gen"] > horizon]
        ratio = float(np.median(others)) if others else rule.gen_ratio
        p = predict_early(None, horizon, replace(rule, gen_ratio=max(ratio, 1.0)), features=r["features"])
        r.update(pred=p.generalizes, pred_t_gen=p.t_gen, reason=p.reason, gen_ratio=ratio,
                 correct=p.generalizes == (r["t_gen"] is not None))
        if p.t_gen and r["t_gen"] and r["t_gen"] > horizon:
            r["t_err"] = abs(math.log2(p.t_gen / r["t_gen"]))
    return rows


def format_eval_table(rows: list[dict], horizon: int, budget: int | None = None) -> str:
    """Markdown table of ``evaluate_runs`` rows plus the accuracy line."""
    def fmt(x, spec="{:.2f}"):
        return "-" if x is None else spec.format(x)
    out = [f"Early prediction from the first {horizon} steps (budget {budget or '?'} steps)", "",
           "| run | class (full run) | t_mem | t_gen | norm ratio | osc | predicted | pred t_gen | ok |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        f = r["features"]
        out.append(f"| {r['label']} | {r['run_class']} | {fmt(r['t_mem'], '{}')} | {fmt(r['t_gen'], '{}')} | "
                   f"{fmt(f.get('norm_ratio'))} | {fmt(f.get('osc'), '{:.3f}')} | "
                   f"{'generalizes' if r['pred'] else 'no'} | {fmt(r['pred_t_gen'], '{}')} | "
                   f"{'yes' if r['correct'] else 'NO'} |")
    n = len(rows)
    acc = sum(r["correct"] for r in rows)
    errs = [r["t_err"] for r in rows if "t_err" in r]
    out += ["", f"whether: {acc}/{n} correct ({100 * acc / max(n, 1):.0f}%)"]
    if errs:
        out.append(f"when (runs generalizing after the horizon, predicted generalizing): median "
                   f"|log2(pred/true)| = {np.median(errs):.2f} over {len(errs)} runs "
                   f"(1.0 = off by 2x)")
    return "\n".join(out)

"""Scoring the early predictor honestly: truth from the analyzer, baselines, Wilson intervals,
tuning on one set of conditions only (``docs/science.md#early-prediction``).

Example:
    >>> wilson(9, 10)                                     # 95 % Wilson interval of 9/10
    (0.5958..., 0.9821...)
    >>> import numpy as np
    >>> from phasewatch.analysis.memtrace import MemoryTrace
    >>> s = np.arange(0, 4001, 20)
    >>> truth(MemoryTrace({"train/acc": (s, 0 * s + 1.0), "val/acc": (s, (s >= 2500) * 1.0)}), 4000)
    2500
"""
from __future__ import annotations

import csv
import gzip
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from .memtrace import MemoryTrace
from .predict import FEATURES, EarlyRule, early_features, predict_early, reference_step

__all__ = ["wilson", "load_long_csv", "truth", "wd_baseline", "tune_rule", "score_rows",
           "format_score_table"]

# features a tuned condition may use (the accuracy ones are the rule's gates already)
TUNABLE = tuple(f for f in FEATURES if f not in ("train_acc", "val_acc", "val_slope"))


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (scipy's ``binomtest``)."""
    from scipy.stats import binomtest
    if n <= 0:
        return (0.0, 1.0)
    ci = binomtest(int(k), int(n)).proportion_ci(confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def load_long_csv(path) -> MemoryTrace:
    """A ``step,name,value`` CSV (optionally ``.gz``) as a :class:`MemoryTrace`."""
    opener = gzip.open if str(path).endswith(".gz") else open
    acc: dict[str, tuple[list, list]] = {}
    with opener(path, "rt", newline="") as f:
        for row in csv.DictReader(f):
            s, v = acc.setdefault(row["name"], ([], []))
            s.append(int(row["step"]))
            v.append(float(row["value"]))
    return MemoryTrace(acc, path=str(path))


def truth(trace, budget: int, threshold: float = 0.99) -> int | None:
    """The analyzer's generalization step (val acc reaches ``threshold`` and stays) if it is
    within ``budget``, else None."""
    from .analyzer import AnalysisConfig, analyze_trace
    cfg = AnalysisConfig(phases=False, memorization=False).with_threshold(threshold)
    ev = analyze_trace(trace, cfg).event("generalization")
    return ev.step if ev is not None and ev.step <= budget else None


def wd_baseline(weight_decay: float, features: dict, min_drop: float = 0.3) -> bool:
    """'Generalizes iff weight decay > 0 and the train loss fell (>= ``min_drop`` decades in the
    window)'."""
    return weight_decay > 0 and (features.get("loss_drop") or 0.0) >= min_drop


def _accuracy(rule: EarlyRule, rows: list[dict]) -> float:
    return float(np.mean([predict_early(None, r["horizon"], rule, features=r["features"]).generalizes
                          is (r["t_gen"] is not None) for r in rows]))


def _candidates(rows: list[dict], base: EarlyRule):
    """Single conditions ``(feature, op, threshold)``: thresholds midway between tuning values."""
    for name in TUNABLE:
        vals = np.unique([r["features"][name] for r in rows if r["features"].get(name) is not None])
        if vals.size < 2:
            continue
        scale = float(np.std(vals)) or 1.0
        for lo, hi in zip(vals[:-1], vals[1:]):
            thr = float(f"{(lo + hi) / 2:.3g}")
            for op in (">=", "<="):
                yield (name, op, thr), (hi - lo) / scale


def tune_rule(rows: list[dict], base: EarlyRule = EarlyRule(conditions=())) -> EarlyRule:
    """Choose one condition (the best tuning accuracy, then the widest gap between the tuning
    values it separates) and ``gen_ratio`` (median ``t_gen / t_val_peak`` of the tuning runs
    that generalized after the horizon and show the peak). ``rows``: ``{"features", "horizon",
    "t_gen"}`` per run, all at one horizon."""
    best = None
    for cond, margin in _candidates(rows, base):
        key = (_accuracy(replace(base, conditions=(cond,)), rows), margin)
        if best is None or key > best[0]:
            best = (key, cond)
    rule = base if best is None else replace(base, conditions=(best[1],))
    ratios = [r["t_gen"] / ref for r in rows
              for ref, seen in [reference_step(r["features"], r["horizon"])]
              if seen and r["t_gen"] and r["t_gen"] > r["horizon"]]
    rule = replace(rule, tuned_horizon=int(rows[0]["horizon"])) if rows else rule
    return replace(rule, gen_ratio=round(max(float(np.median(ratios)), 1.0), 2)) if ratios else rule


def score_rows(rows: list[dict], rule: EarlyRule, majority: bool) -> dict:
    """Add ``pred`` / ``pred_t_gen`` / ``wd_pred`` to each row; return the summary per method."""
    for r in rows:
        p = predict_early(None, r["horizon"], rule, features=r["features"])
        r.update(pred=p.generalizes, pred_t_gen=p.t_gen, reason=p.reason,
                 wd_pred=wd_baseline(r["weight_decay"], r["features"], rule.min_drop))
    n = len(rows)
    out = {}
    for method, key in (("predictor", "pred"), ("majority class", None), ("wd > 0 and loss fell", "wd_pred")):
        k = sum((majority if key is None else r[key]) is (r["t_gen"] is not None) for r in rows)
        out[method] = {"k": k, "n": n, "acc": k / n if n else float("nan"), "wilson95": wilson(k, n)}
    errs = [abs(math.log2(r["pred_t_gen"] / r["t_gen"])) for r in rows
            if r["pred"] and r["pred_t_gen"] and r["t_gen"] and r["t_gen"] > r["horizon"]]
    out["timing"] = {"median_abs_log2": float(np.median(errs)) if errs else None, "n": len(errs)}
    return out


def format_score_table(rows: list[dict], summary: dict, title: str) -> str:
    """Markdown: one line per condition, then accuracy with Wilson 95 % intervals per method."""
    def yn(x):
        return "-" if x is None else ("yes" if x else "no")
    out = [title, "", "| condition | t_gen (truth) | predictor | pred t_gen | wd baseline |",
           "|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["pred"] is (r["t_gen"] is not None) else " **wrong**"
        out.append(f"| {r['label']} | {r['t_gen'] if r['t_gen'] is not None else 'none'} | "
                   f"{yn(r['pred'])}{mark} | {r['pred_t_gen'] or '-'} | {yn(r['wd_pred'])} |")
    out += ["", "| method | correct | accuracy | Wilson 95 % |", "|---|---|---|---|"]
    for m in ("predictor", "majority class", "wd > 0 and loss fell"):
        s = summary[m]
        out.append(f"| {m} | {s['k']}/{s['n']} | {100 * s['acc']:.0f} % | "
                   f"[{100 * s['wilson95'][0]:.0f} %, {100 * s['wilson95'][1]:.0f} %] |")
    t = summary["timing"]
    if t["median_abs_log2"] is not None:
        out.append(f"\nwhen: median |log2(predicted / true t_gen)| = {t['median_abs_log2']:.2f} over "
                   f"{t['n']} runs that generalized after the horizon (1.0 = off by 2x)")
    return "\n".join(out)


def condition_rows(doc: dict, part: str, data_dir: Path, horizon: int) -> list[dict]:
    """Rows of one condition set of ``conditions.json`` whose trace is stored in ``data_dir``."""
    rows = []
    for label, cond in doc[part].items():
        path = Path(data_dir) / f"{label}.csv.gz"
        if not path.exists():
            continue
        trace = load_long_csv(path)
        rows.append({"label": label, "horizon": horizon, "t_gen": truth(trace, doc["budget"]),
                     "weight_decay": float(cond.get("model.weight_decay", doc["weight_decay"])),
                     "features": early_features(trace, horizon)})
    return rows

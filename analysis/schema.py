"""The analysis.json schema (version 1) and a reader that checks it.

``RUN/analysis/analysis.json`` (strict JSON: non-finite numbers are written as null):

| key | type | meaning |
|---|---|---|
| ``schema_version`` | int | 1; readers refuse other versions |
| ``run`` | str or null | the analyzed run directory |
| ``run_class`` | str | ``comprehension`` / ``grokking`` / ``memorization`` / ``confusion`` / ``unknown`` (Liu et al. 2022; rules in ``classify.py``) |
| ``censored`` | bool | the class may still change with more steps ("not yet", budget-aware) |
| ``class_reason`` | str | the rule and numbers that gave the class |
| ``budget`` | int or null | last logged step |
| ``flags`` | list[str] | any of ``diverged``, ``slingshot``, ``ungrokking``, ``semi_grokking`` |
| ``events`` | list[event] | sorted by step; see below |
| ``thresholds`` | {"0.9"/"0.95"/"0.99": {"memorization": event or null, "generalization": event or null}} | reach-and-stay steps at each threshold |
| ``transitions`` | {signal: {lo, hi, log10_midpoint, width_decades, rmse, onset, midpoint, completion}} | log-step sigmoid fitted to the last rise of train/val accuracy |
| ``phases`` | {boundaries: [event-like], phases: [{name, start, end, change: {signal: scaled change}}], signals, noise_var, grid_end} or {insufficient} | Nanda phases |
| ``memorization`` | {o1, o2, o3, o4, forgetting, cartography, capacity, subset_acc, corrupted_true_label, n_examples} (present parts only) | per-example results (``memorization.py``) |
| ``insufficient`` | list[str] | "insufficient data for X: why" notes |
| ``series`` | list[str] | series names in the run |
| ``config`` | dict | every threshold and rule used (``AnalysisConfig``), plus ``gap_steps`` / ``gap_ratio`` |

An event: ``{"name", "step", "low", "high", "signal", "evidence": {...}}`` (steps are
optimizer steps; ``[low, high]`` is the uncertainty interval). Event names:
``memorization`` / ``generalization`` (threshold reached and kept; interval = sampling gap
plus noise band), ``memorization_onset|midpoint|completion`` and
``generalization_onset|midpoint|completion`` (10/50/90% of the fitted rise; interval
+-1.96 SE), ``diverged``, ``slingshot``, ``ungrokking``, ``semi_grokking``,
``memorization_end`` / ``circuit_formation_end`` / ``cleanup_end`` (Nanda boundaries),
``corrupted_memorization_onset|t50|t90`` (O1; ``examples_memorization_*`` on all examples
when there is no corrupted tag), ``early_stopping`` (O2). Phases carry ``tentative: true``
when the run has not generalized (only the end of memorization is searched).

Example:
    >>> doc = {"schema_version": 1, "run_class": "grokking", "flags": [], "events": []}
    >>> check_analysis(doc)["run_class"]
    'grokking'
"""
from __future__ import annotations

import json

__all__ = ["SCHEMA_VERSION", "RUN_CLASSES", "FLAGS", "check_analysis", "load_analysis"]

SCHEMA_VERSION = 1
RUN_CLASSES = ("comprehension", "grokking", "memorization", "confusion", "unknown")
FLAGS = ("diverged", "slingshot", "ungrokking", "semi_grokking")
EVENT_KEYS = ("name", "step", "low", "high", "signal")


def check_analysis(doc: dict, source: str = "analysis.json") -> dict:
    """Validate the required keys / types of an analysis document; ValueError naming ``source``."""
    if not isinstance(doc, dict):
        raise ValueError(f"{source}: not a JSON object")
    v = doc.get("schema_version")
    if v != SCHEMA_VERSION:
        raise ValueError(f"{source}: schema_version {v!r} is not {SCHEMA_VERSION}; "
                         "re-run `phasewatch analyze` with this version")
    if doc.get("run_class") not in RUN_CLASSES:
        raise ValueError(f"{source}: run_class {doc.get('run_class')!r} not in {RUN_CLASSES}")
    for key in ("flags", "events"):
        if not isinstance(doc.get(key, []), list):
            raise ValueError(f"{source}: {key!r} must be a list, got {type(doc[key]).__name__}")
    bad = [f for f in doc.get("flags", []) if not isinstance(f, str) or f not in FLAGS]
    if bad:
        raise ValueError(f"{source}: unknown flags {bad[:10]}")
    for i, e in enumerate(doc.get("events", [])):
        if not isinstance(e, dict):
            raise ValueError(f"{source}: event {i} is a {type(e).__name__}, not an object")
        missing = [k for k in EVENT_KEYS if k not in e]
        if missing:
            raise ValueError(f"{source}: event {i} lacks {missing}")
    return doc


def load_analysis(path) -> dict:
    """Read and check ``analysis.json``; a clear ValueError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (ValueError, RecursionError) as e:  # JSONDecodeError, UnicodeDecodeError, nesting
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ValueError(f"{path}: not a JSON analysis file ({reason})") from None
    return check_analysis(doc, str(path))

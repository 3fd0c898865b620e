"""The analysis.json schema (version 2) and a reader that checks it.

``RUN/analysis/analysis.json`` (strict JSON: non-finite numbers are written as null):

| key | type | meaning |
|---|---|---|
| ``schema_version`` | int | 2; readers refuse other versions with a one-line "re-run `phasewatch analyze`" (version 1 had ``early_stopping`` and evaluation-step crossings) |
| ``run`` | str or null | the analyzed run directory |
| ``run_class`` | str | ``comprehension`` / ``grokking`` / ``memorization`` / ``confusion`` / ``unknown`` (Liu et al. 2022; rules in ``classify.py``) |
| ``censored`` | bool | the class may still change with more steps ("not yet", budget-aware) |
| ``class_reason`` | str | the rule and numbers that gave the class |
| ``verdicts`` | list[{threshold, class, censored, t_train, t_val, gap, gap_range, ambiguous, reason, rule}] | the class at the configured threshold (first, = ``run_class``) and at Liu et al.'s 0.9; ``gap`` is t_val/t_train (or t_val - t_train), ``gap_range`` its range over the measurement intervals, ``ambiguous`` when that range straddles the cutoff, ``rule`` the rule in words |
| ``budget`` | int or null | last logged step |
| ``flags`` | list[str] | any of ``diverged``, ``slingshot``, ``inversion``, ``forgetting``, ``ungrokking``, ``semi_grokking`` |
| ``events`` | list[event] | sorted by step; see below |
| ``thresholds`` | {"0.9"/"0.95"/"0.99": {"memorization": event or null, "generalization": event or null}} | crossing steps at each threshold (train: first reach, val: reach and stay) |
| ``transitions`` | {signal: {lo, hi, log10_midpoint, width_decades, rmse, log10_window, onset, midpoint, completion}} | log-step sigmoid fitted to the last rise of train/val accuracy |
| ``phases`` | {boundaries: [event-like], phases: [{name, start, end, change: {signal: scaled change}}], signals, noise_var, grid_end} or {insufficient} | Nanda phases |
| ``memorization`` | {o1, o2, o3, o4, forgetting, cartography, capacity, subset_acc, corrupted_true_label, n_examples} (present parts only) | per-example results (``memorization.py``) |
| ``insufficient`` | list[str] | "insufficient data for X: why" notes |
| ``series`` | list[str] | series names in the run |
| ``config`` | dict | every threshold and rule used (``AnalysisConfig``), plus ``gap_steps`` / ``gap_ratio`` |

An event: ``{"name", "step", "low", "high", "signal", "evidence": {...}}`` (steps are
optimizer steps). ``[low, high]`` is the MEASUREMENT interval of this one run: where the
event may lie given the evaluation grid and the curve's noise (never narrower than the two
evaluations that bracket it). It is not the spread over seeds: ``phasewatch aggregate``
reports that per event (``groups[].spread``). Event names (docs/science.md#events-run-classes-and-intervals):
``memorization`` (train accuracy first reaches the threshold, kept if it falls later) /
``generalization`` (val accuracy reaches it and stays); step interpolated between
evaluations (``evidence.interpolated_step``, ``evidence.bracket``); interval = bracketing
evaluations, noise band, and the fitted rise's inverse prediction band.
``memorization_onset|midpoint|completion`` and ``generalization_onset|midpoint|completion``
(10/50/90% of the fitted rise; interval = inverse prediction band from local residuals,
bracketing evaluations, the data's own crossing). ``train_acc_fall`` (train accuracy fell
``ungrok_drop`` below the threshold after memorization and ended there; ``evidence.final``,
``evidence.flag`` = ``inversion`` or ``forgetting``), ``diverged``, ``slingshot``,
``ungrokking``, ``semi_grokking``, ``memorization_end`` / ``circuit_formation_end`` /
``cleanup_end`` (Nanda boundaries), ``corrupted_memorization_onset|t50|t90`` (O1;
``examples_memorization_*`` on all examples when there is no corrupted tag),
``best_val_plateau`` (O2: argmax of smoothed val accuracy; interval = the steps whose
smoothed val accuracy is within ``evidence.tolerance`` of the maximum). Phases carry
``tentative: true`` when the run has not generalized (only the end of memorization is searched).

Example:
    >>> doc = {"schema_version": 2, "run_class": "grokking", "flags": [], "events": []}
    >>> check_analysis(doc)["run_class"]
    'grokking'
"""
from __future__ import annotations

import json

__all__ = ["SCHEMA_VERSION", "RUN_CLASSES", "FLAGS", "check_analysis", "load_analysis"]

SCHEMA_VERSION = 2
RUN_CLASSES = ("comprehension", "grokking", "memorization", "confusion", "unknown")
FLAGS = ("diverged", "slingshot", "inversion", "forgetting", "ungrokking", "semi_grokking")
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

"""Checks of a phase result against the trace it came from (imported as `phase_checks`).

They recompute what they assert from the raw samples (not from the segmenter's own numbers).
"""
import numpy as np

from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.phases import nanda_phases_from_trace


def without_probe(trace, step):
    """The trace with every ``circuit/*`` sample at ``step`` removed (one probe dropped)."""
    series = {}
    for n in trace.names():
        s, v = trace.series(n)[:2]
        s, v = np.asarray(s), np.asarray(v)
        keep = (s != step) if n.startswith("circuit/") else np.ones(s.size, dtype=bool)
        series[n] = (s[keep], v[keep])
    return MemoryTrace(series, meta=dict(getattr(trace, "meta", {}) or {}))


def drop_one_violations(trace, result, val_midpoint, jackknife=False):
    """``[(dropped step, boundary name, step or None, interval)]`` where dropping one probe moves
    a named boundary out of its interval or loses it. ``jackknife=False`` re-runs the
    segmentation and naming only (what the interval promises); True re-runs the whole analysis
    (then a boundary that is no longer named is not counted, only one that moved out)."""
    want = {b["name"]: (b["low"], b["high"]) for b in result["boundaries"] if b["name"]}
    bad = []
    for step in trace.series("circuit/excluded_loss")[0]:
        r = nanda_phases_from_trace(without_probe(trace, step), val_midpoint=val_midpoint, n_boot=0,
                                    jackknife=jackknife)
        got = {b["name"]: b["step"] for b in r.get("boundaries", []) if b["name"]}
        for name, (lo, hi) in want.items():
            if name not in got and jackknife:
                continue
            if name not in got or not lo <= got[name] <= hi:
                bad.append((int(step), name, got.get(name), (lo, hi)))
    return bad


def value_at(trace, name, step):
    """The sample of ``name`` nearest to ``step``."""
    s, v = trace.series(name)[:2]
    return float(np.asarray(v)[np.argmin(np.abs(np.asarray(s) - step))])


def signature_holds_on_samples(trace, phase):
    """The raw samples at a phase's ends move the way its name says (a second computation)."""
    a, b = phase["start"], phase["end"]

    def up(n):
        return value_at(trace, n, b) > value_at(trace, n, a)

    if phase["name"] == "memorization":
        return (not up("train/loss")) and not up("circuit/excluded_loss")
    if phase["name"] == "circuit_formation":
        return up("circuit/excluded_loss") and not up("circuit/restricted_loss") and not up("weights/sum_sq")
    if phase["name"] == "cleanup":
        return (not up("val/loss")) and not up("weights/sum_sq") and up("circuit/gini")
    return True

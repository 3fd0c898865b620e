"""Run-level analysis: events, run class, flags, phases, memorization -> ``AnalysisResult``.

``analyze_run(path)`` reads a run directory (``load_run``); ``analyze_trace(trace)``
takes anything with the reader API (``names``, ``series``, ``array_names``, ``arrays``,
``meta``), e.g. a :class:`~phasewatch.analysis.memtrace.MemoryTrace`.

Example:
    >>> import numpy as np
    >>> from phasewatch.analysis.memtrace import MemoryTrace
    >>> s = np.arange(0, 5000, 10)
    >>> t = MemoryTrace({"train/acc": (s, (s >= 100) * 1.0), "val/acc": (s, (s >= 2000) * 1.0)})
    >>> analyze_trace(t).run_class
    'grokking'
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

import numpy as np

from .classify import ClassifyConfig, still_rising, verdict_at
from .events import Event, detect_spikes, fall_event, fit_transition, plateau_argmax, threshold_event
from .signals import clean, level_at, running_median

__all__ = ["SCHEMA_VERSION", "AnalysisConfig", "AnalysisResult", "analyze_trace", "analyze_run",
           "write_analysis"]

from .schema import SCHEMA_VERSION  # noqa: E402  (the documented schema lives there)


#: Liu et al. 2022's accuracy threshold: its verdict is always reported beside the configured one
LIU_THRESHOLD = 0.9


@dataclass(frozen=True)
class AnalysisConfig:
    """What to analyze and with which thresholds. ``classify`` holds the class rules."""

    classify: ClassifyConfig = ClassifyConfig()
    extra_thresholds: tuple = (0.9, 0.95)
    train_acc: str = "train/acc"
    val_acc: str = "val/acc"
    train_loss: str = "train/loss"
    val_loss: str = "val/loss"
    phases: bool = True
    memorization: bool = True
    capacity: tuple = ()          # (("random_targets", True), ("n_classes", 16), ...) overrides meta

    @property
    def threshold(self) -> float:
        return self.classify.threshold

    def with_threshold(self, threshold: float) -> "AnalysisConfig":
        return replace(self, classify=replace(self.classify, threshold=threshold))

    def to_dict(self) -> dict:
        return {"classify": self.classify.to_dict(), "extra_thresholds": list(self.extra_thresholds),
                "train_acc": self.train_acc, "val_acc": self.val_acc,
                "train_loss": self.train_loss, "val_loss": self.val_loss,
                "capacity": dict(self.capacity)}


@dataclass(frozen=True)
class AnalysisResult:
    """Everything ``phasewatch analyze`` reports; ``to_dict`` is the analysis.json content."""

    run: str | None
    run_class: str
    censored: bool
    class_reason: str
    budget: int | None
    flags: tuple
    events: tuple
    thresholds: dict
    transitions: dict
    phases: dict
    memorization: dict
    insufficient: tuple
    series: tuple
    config: dict = field(default_factory=dict)
    verdicts: tuple = ()

    def event(self, name: str) -> Event | None:
        """The first event called ``name`` (None if absent)."""
        for e in self.events:
            if e.name == name:
                return e
        return None

    def to_dict(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "run": self.run,
            "run_class": self.run_class,
            "censored": self.censored,
            "class_reason": self.class_reason,
            "verdicts": list(self.verdicts),
            "budget": self.budget,
            "flags": list(self.flags),
            "events": [e.to_dict() for e in self.events],
            "thresholds": self.thresholds,
            "transitions": self.transitions,
            "phases": self.phases,
            "memorization": self.memorization,
            "insufficient": list(self.insufficient),
            "series": list(self.series),
            "config": self.config,
        }

    def summary(self) -> str:
        """A short human summary (the same numbers as ``to_dict``)."""
        lines = [f"run: {self.run or '<memory>'}  (budget {self.budget} steps)",
                 f"class: {self.run_class}{' (censored: not yet)' if self.censored else ''}"
                 f" - {self.class_reason}"]
        for v in self.verdicts[1:]:
            if v["class"] != self.run_class:
                lines.append(f"class at threshold {v['threshold']:g} (Liu et al.): {v['class']}"
                             f"{' (censored: not yet)' if v['censored'] else ''} - {v['reason']}")
        if self.flags:
            lines.append("flags: " + ", ".join(self.flags))
        for e in self.events:
            if e.step is None:
                continue
            lines.append(f"  {e.name:<28} step {e.step:>9}  [{e.low}, {e.high}]  ({e.signal})")
        ph = self.phases.get("phases") if isinstance(self.phases, dict) else None
        if ph:
            lines.append("phases" + (" (tentative: not generalized)" if self.phases.get("tentative") else "")
                         + ": " + ", ".join(f"{p['name']} {p['start']}-{p['end']}" for p in ph))
        mem = self.memorization
        if isinstance(mem, dict) and mem.get("o1"):
            o1 = mem["o1"]
            lines.append(f"memorization onset O1 {o1.get('onset')}, t50 {o1.get('t50')}, t90 {o1.get('t90')}")
        for note in self.insufficient:
            lines.append(f"  note: {note}")
        return "\n".join(lines)


class _Cleaned:
    """Reader-API view of a trace whose series are cleaned once (sorted, deduplicated, finite)."""

    def __init__(self, trace):
        self._t = trace
        self._c: dict = {}
        self.bad: dict = {}
        self.meta = getattr(trace, "meta", {})
        self.path = getattr(trace, "path", None)

    def names(self):
        return self._t.names()

    def series(self, name):
        if name not in self._c:
            s, v, b = clean(*self._t.series(name))
            self._c[name] = (s, v)
            self.bad[name] = b
        return self._c[name]

    def array_names(self):
        return self._t.array_names()

    def arrays(self, name):
        return self._t.arrays(name)

    def events(self):
        return self._t.events()


ALIASES = {"train/acc": ("train_acc", "train/accuracy", "train_accuracy", "acc", "accuracy"),
           "val/acc": ("val_acc", "val/accuracy", "val_accuracy", "valid/acc", "test/acc", "test_acc"),
           "train/loss": ("train_loss", "loss"),
           "val/loss": ("val_loss", "valid/loss", "test/loss", "test_loss")}


def _resolve(config: AnalysisConfig, names) -> AnalysisConfig:
    """Use a common alias (``val_acc``, ``test/acc`` ...) when a default series name is absent."""
    names = set(names)
    upd = {}
    for field_, default in (("train_acc", "train/acc"), ("val_acc", "val/acc"),
                            ("train_loss", "train/loss"), ("val_loss", "val/loss")):
        cur = getattr(config, field_)
        if cur == default and cur not in names:
            alt = next((a for a in ALIASES[default] if a in names), None)
            if alt is not None:
                upd[field_] = alt
    return replace(config, **upd) if upd else config


def _get(trace, name):
    if name not in trace.names():
        return None
    s, v = trace.series(name)
    return np.asarray(s), np.asarray(v, dtype=np.float64)


def analyze_trace(trace, config: AnalysisConfig = AnalysisConfig(), run: str | None = None) -> AnalysisResult:
    """Analyze one trace (reader API) and return an :class:`AnalysisResult`."""
    cc = config.classify
    thr = cc.threshold
    events: list[Event] = []
    flags: list[str] = []
    insufficient: list[str] = []
    transitions: dict = {}
    thresholds: dict = {}
    trace = trace if isinstance(trace, _Cleaned) else _Cleaned(trace)
    names = list(trace.names())
    config = _resolve(config, names)
    tr, va = _get(trace, config.train_acc), _get(trace, config.val_acc)
    budgets = [int(steps[-1]) for steps in (trace.series(n)[0] for n in names) if len(steps)]
    budget = max(budgets) if budgets else None

    # divergence: any non-finite in the core series
    bad = []
    for n in (config.train_loss, config.val_loss, config.train_acc, config.val_acc):
        if _get(trace, n) is not None and trace.bad.get(n) is not None:
            bad.append((trace.bad[n], n))
    if bad:
        b, n = min(bad)
        flags.append("diverged")
        events.append(Event("diverged", b, b, b, n, {"first_nonfinite_step": b}))

    cleaned = {}
    by_thr: dict = {}                       # threshold -> {event name: Event}
    for key, got, label, evname in ((config.train_acc, tr, "train", "memorization"),
                                    (config.val_acc, va, "val", "generalization")):
        if got is None:
            insufficient.append(f"insufficient data for {evname}: no series {key!r}")
            continue
        s, v = got  # already cleaned by _Cleaned
        if s.size < 3:
            insufficient.append(f"insufficient data for {evname}: {s.size} finite points in {key!r}")
            continue
        cleaned[label] = (s, v)
        tx = fit_transition(s, v, signal=key, name=evname)
        if tx is not None:
            transitions[key] = tx.to_dict()
            events.extend([tx.onset, tx.midpoint, tx.completion])
        elif float(np.ptp(v)) >= 0.1:
            insufficient.append(f"no transition fitted to {key}: not a single reliable rise")
        sm = running_median(v, 5) if v.size >= 5 else v
        for t in sorted({thr, LIU_THRESHOLD, *config.extra_thresholds}):
            e = threshold_event(s, v, t, name=evname, signal=key, hysteresis=cc.hysteresis,
                                smoothed=sm, first_reach=label == "train")
            e = e if e is None or tx is None else tx.widen(e)
            by_thr.setdefault(t, {})[evname] = e
            thresholds.setdefault(f"{t:g}", {})[evname] = None if e is None else e.to_dict()
            if t == thr and e is not None:
                events.append(e)

    ev_mem = by_thr.get(thr, {}).get("memorization")
    ev_gen = by_thr.get(thr, {}).get("generalization")
    rising = {k: k in cleaned and still_rising(*cleaned[k], delta=cc.rising_delta) for k in ("train", "val")}
    rc, verdicts = None, []
    for t in dict.fromkeys((thr, LIU_THRESHOLD)):
        rc_t, verdict = verdict_at(t, by_thr.get(t, {}), set(cleaned), rising, budget, cc)
        rc = rc or rc_t
        verdicts.append(verdict)
    val_rising = rising["val"]

    if "train" in cleaned and ev_mem is not None:
        fall = fall_event(*cleaned["train"], thr, cc.ungrok_drop, name="train_acc_fall",
                          signal=config.train_acc)
        if fall is not None:
            flag = "inversion" if ev_gen is not None else "forgetting"
            flags.append(flag)
            events.append(replace(fall, evidence={**fall.evidence, "flag": flag}))
            note = (f"; train acc then fell to {fall.evidence['final']:.3g} (below {thr - cc.ungrok_drop:g}"
                    f" from step {fall.step}): {flag}")
            rc = replace(rc, reason=rc.reason + note)
            verdicts[0]["reason"] += note
    if "val" in cleaned:
        s, v = cleaned["val"]
        ug = fall_event(s, v, thr, cc.ungrok_drop, name="ungrokking", signal=config.val_acc)
        if ug is not None:
            flags.append("ungrokking")
            events.append(ug)
        if ev_gen is None and ug is None and ev_mem is not None and config.val_acc in transitions:
            t = transitions[config.val_acc]
            base = level_at(s, v, ev_mem.step)
            final = float(np.median(v[-max(3, v.size // 10):]))
            mid = t["midpoint"]["step"]
            if final - base >= cc.semi_min_rise and mid > 2 * ev_mem.step and final < thr \
                    and not val_rising:                  # a rise still under way is not a plateau
                flags.append("semi_grokking")
                m = t["midpoint"]
                events.append(Event("semi_grokking", m["step"], m["low"], m["high"], config.val_acc,
                                    {"level_at_memorization": base, "final": final}))
    got = _get(trace, config.train_loss)
    if got is not None:
        spikes = detect_spikes(*got, signal=config.train_loss, decades=cc.spike_decades)
        if spikes:
            flags.append("slingshot")
            events.extend(spikes)

    phases: dict = {}
    if config.phases:
        from .phases import nanda_phases_from_trace
        phases = nanda_phases_from_trace(trace, generalized=ev_gen is not None)
        if phases.get("insufficient"):
            insufficient.append(phases["insufficient"])
        for b in phases.get("boundaries", []):
            events.append(Event(b["name"], b["step"], b["low"], b["high"], "phases",
                                {"signals": phases.get("signals", [])}))
    memo: dict = {}
    if config.memorization:
        from .memorization import memorization_from_trace
        memo = memorization_from_trace(trace, val=cleaned.get("val"), capacity=dict(config.capacity))
        if memo.get("insufficient"):
            insufficient.append(memo["insufficient"])
        o1 = memo.get("o1") or {}
        sig = "examples/train/correct"
        pre = "corrupted_memorization" if "subset" not in o1 else "examples_memorization"
        for key, name in (("onset", f"{pre}_onset"), ("t50", f"{pre}_t50"), ("t90", f"{pre}_t90")):
            if o1.get(key) is not None:
                events.append(Event(name, o1[key], o1[f"{key}_low"], o1[key], sig,
                                    {k: o1[k] for k in ("baseline", "delta", "k") if k in o1}))
        if memo.get("o2"):
            o2 = memo["o2"]
            events.append(Event("best_val_plateau", o2["step"], o2["low"], o2["high"], config.val_acc,
                                {k: o2[k] for k in ("smoothed_val_acc", "tolerance")}))

    events.sort(key=lambda e: (e.step if e.step is not None else -1, e.name))
    return AnalysisResult(run, rc.run_class, rc.censored, rc.reason, budget, tuple(flags),
                          tuple(events), thresholds, transitions, phases, memo, tuple(insufficient),
                          tuple(names), {**config.to_dict(), "gap_steps": rc.gap_steps,
                                         "gap_ratio": rc.gap_ratio}, tuple(verdicts))


def analyze_run(path, config: AnalysisConfig = AnalysisConfig()) -> AnalysisResult:
    """Load the run directory at ``path`` and analyze it."""
    from .store import load_run
    trace = load_run(path)
    try:
        return analyze_trace(trace, config, run=str(path))
    finally:
        close = getattr(trace, "close", None)
        if close is not None:
            close()


def write_analysis(result: AnalysisResult, run_dir, out_dir=None) -> str:
    """Write ``out_dir/analysis.json`` (default ``run_dir/analysis/``); return its path."""
    out = str(out_dir) if out_dir is not None else os.path.join(str(run_dir), "analysis")
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, "analysis.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_sanitize(result.to_dict()), f, indent=1, default=_json_default, allow_nan=False)
    os.replace(tmp, path)
    return path


def _sanitize(o):
    """Replace non-finite floats by None (analysis.json is strict JSON)."""
    if isinstance(o, dict):
        return {str(k): _sanitize(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_sanitize(v) for v in o]
    if isinstance(o, (float, np.floating)):
        return float(o) if np.isfinite(o) else None
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.ndarray):
        return _sanitize(o.tolist())
    return o


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serializable: {type(o).__name__}")

"""Live phase detection: ``live_events`` (shared with the PhaseMonitor callback) and ``watch``.

``live_events(trace)`` runs the offline analyzer's detectors (``analyze_trace`` without the
Nanda phases and per-example memorization, which need the whole run) on the trace so far and
returns the events that later data can no longer move: a threshold event is *confirmed*
once ``confirm`` samples of its signal follow it (the running median that dates it is then
final), a loss spike once its median window is complete, a divergence at once. On a run that
does not fall back after crossing, a confirmed event has the same step as in the offline
analysis of the finished run (its ``[low, high]`` interval is the one known at detection:
the offline noise band also looks at later samples).

``watch(root)`` follows every run directory under ``root`` (read-only; safe while training
writes; a ``root`` that does not exist yet is waited for, except with ``once``): it prints each confirmed event once, one progress line per run whose step moved,
and the final class when a run's status leaves ``running``. Runs that stop advancing
without a final status for ``stale_s`` seconds are shown as ``stalled``.

Example:
    >>> import numpy as np
    >>> from phasewatch.analysis.memtrace import MemoryTrace
    >>> s = np.arange(0, 1000, 10)
    >>> t = MemoryTrace({"train/acc": (s, (s >= 100) * 1.0), "val/acc": (s, (s >= 600) * 1.0)})
    >>> [(e.name, e.step) for e in live_events(t)[1]]
    [('memorization', 100), ('generalization', 600)]
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .analyzer import AnalysisConfig
from .classify import classify_run, still_rising
from .events import Event, detect_spikes, threshold_event
from .signals import clean
from .memtrace import MemoryTrace
from .names import ROLES, resolve_all, resolve_config
from .store import TRACE_FILE, TraceStoreError

__all__ = ["LiveResult", "live_events", "read_live_trace", "find_runs", "Watcher", "watch"]

#: samples of the event's signal that must follow it before it is reported, by event name
CONFIRM = {"memorization": 3, "generalization": 3, "slingshot": 6, "diverged": 0}


@dataclass(frozen=True)
class LiveResult:
    """The light analysis of a trace so far: class (with ``censored``), budget, events."""

    run_class: str
    censored: bool
    class_reason: str
    budget: int | None
    events: tuple


def live_events(trace, config: AnalysisConfig = AnalysisConfig(), confirm: int = 3
                ) -> tuple[LiveResult, list[Event]]:
    """``(result, confirmed)``: the analyzer's threshold, divergence and spike detectors and its
    run classifier on ``trace`` so far (cheap: no sigmoid fits, phases or per-example data),
    and the events among them that later data can no longer move.

    ``confirm`` is the number of samples that must follow a threshold event (>= 3: the
    running median of 5 that dates it is then complete).
    """
    if confirm < 3:
        raise ValueError(f"confirm must be >= 3 (the smoothing half-window + 1), got {confirm}")
    cc = config.classify
    names = list(trace.names())
    config = resolve_config(config, names)
    events, cleaned, budget, nonfinite = [], {}, None, []
    for key in (config.train_loss, config.val_loss, config.train_acc, config.val_acc):
        if key not in names:
            continue
        raw_steps, raw_values = trace.series(key)
        s, v, bad = clean(raw_steps, raw_values)
        cleaned[key] = (s, v)
        if len(raw_steps):
            budget = max(budget or 0, int(np.max(raw_steps)))
        if bad is not None:
            nonfinite.append((bad, key))
    if nonfinite:  # the earliest non-finite step of any core series, as analyze_trace does
        bad, key = min(nonfinite)
        events.append(Event("diverged", bad, bad, bad, key, {"first_nonfinite_step": bad}))
    hits = {}
    for key, evname in ((config.train_acc, "memorization"), (config.val_acc, "generalization")):
        s, v = cleaned.get(key, (np.array([]), np.array([])))
        if s.size < 3:
            continue
        e = threshold_event(s, v, cc.threshold, name=evname, signal=key, hysteresis=cc.hysteresis,
                            first_reach=evname == "memorization")   # as the offline analyzer
        if e is not None:
            hits[evname] = e
            if int(np.sum(s > e.step)) >= confirm:
                events.append(e)
    if config.train_loss in cleaned:
        for e in detect_spikes(*cleaned[config.train_loss], signal=config.train_loss,
                               decades=cc.spike_decades):
            if int(np.sum(cleaned[config.train_loss][0] > e.high)) >= CONFIRM["slingshot"]:
                events.append(e)
    tr, va = cleaned.get(config.train_acc), cleaned.get(config.val_acc)
    have_train, have_val = tr is not None and tr[0].size >= 3, va is not None and va[0].size >= 3
    mem, gen = hits.get("memorization"), hits.get("generalization")
    rc = classify_run(mem.step if mem else None, gen.step if gen else None, budget=budget or 0,
                      have_train=have_train, have_val=have_val,
                      val_rising=have_val and still_rising(*va, delta=cc.rising_delta),
                      train_rising=have_train and still_rising(*tr, delta=cc.rising_delta), config=cc)
    events.sort(key=lambda e: (e.step, e.name))
    return LiveResult(rc.run_class, rc.censored, rc.reason, budget, tuple(events)), events


def read_live_trace(run_dir, config: AnalysisConfig = AnalysisConfig()) -> tuple[MemoryTrace, dict]:
    """The four core series (resolved by ``phasewatch.analysis.names``, under the run's own
    names) and the meta of a run dir, read-only, as a MemoryTrace."""
    from .store_read import load_run
    with load_run(run_dir) as run:
        found = resolve_all(run.names(), config)
        series = {n: run.series(n) for n in found.values()}
        meta = run.meta
    return MemoryTrace(series, meta=meta, path=str(run_dir)), meta


def find_runs(root) -> list[Path]:
    """Run directories (holding ``trace.sqlite``) at ``root`` or one / two levels below it."""
    root = Path(root)
    if (root / TRACE_FILE).is_file():
        return [root]
    found, seen = [], set()
    for pattern in ("*/" + TRACE_FILE, "*/*/" + TRACE_FILE):
        for db in sorted(root.glob(pattern)):
            d = db.parent
            key = d.resolve()
            if d.name == "latest" or key in seen:
                continue
            seen.add(key)
            found.append(d)
    return found


@dataclass
class _RunState:
    path: Path
    signature: tuple = ()
    step: int | None = None
    status: str = "?"
    reported: dict = field(default_factory=dict)   # event name -> step printed
    done: bool = False
    last_change: float = field(default_factory=time.monotonic)
    run_class: str = "-"
    error: str | None = None
    values: dict = field(default_factory=dict)


def _signature(run_dir: Path) -> tuple:
    out = []
    for suffix in ("", "-wal"):
        try:
            st = os.stat(run_dir / (TRACE_FILE + suffix))
            # an empty -wal is what a reader's open leaves behind: not new data
            out.append((st.st_mtime_ns, st.st_size) if st.st_size else None)
        except OSError:
            out.append(None)
    return tuple(out)


class Watcher:
    """Polls run directories under ``root``; ``poll()`` returns the lines to print.

    Args:
        root: a run directory or a folder of run directories (e.g. ``runs/``).
        config: analyzer thresholds (the same as ``phasewatch analyze``).
        stale_s: a ``running`` run without new data for this long is shown as ``stalled``.
    """

    def __init__(self, root, config: AnalysisConfig = AnalysisConfig(), stale_s: float = 120.0,
                 must_exist: bool = True):
        if must_exist and not Path(root).exists():
            raise ValueError(f"watch: {root} does not exist; pass a run directory or a folder of runs")
        self.root, self.config, self.stale_s = Path(root), config, float(stale_s)
        self.runs: dict[Path, _RunState] = {}

    def poll(self) -> list[str]:
        lines: list[str] = []
        for d in find_runs(self.root):
            st = self.runs.get(d)
            if st is None:
                st = self.runs[d] = _RunState(d)
                lines.append(f"+ {d.name}")
            sig = _signature(d)
            if sig == st.signature:
                if st.status == "running" and time.monotonic() - st.last_change > self.stale_s:
                    st.status = "stalled"
                    lines.append(f"! {d.name}: no new data for {self.stale_s:.0f} s (crashed?)")
                continue
            st.signature, st.last_change = sig, time.monotonic()
            lines += self._update(st)
        return lines

    def _update(self, st: _RunState) -> list[str]:
        lines = []
        try:
            trace, meta = read_live_trace(st.path, self.config)
        except (TraceStoreError, OSError) as e:  # e.g. a store being created right now
            st.error = str(e).splitlines()[0]
            return lines
        st.error = None
        status = str(meta.get("status", "?"))
        finished = status not in ("running", "?")
        res, confirmed = live_events(trace, self.config)
        for e in confirmed:
            if st.reported.get(e.name) != e.step:
                tag = "" if e.name not in st.reported else f" (revised from {st.reported[e.name]})"
                st.reported[e.name] = e.step
                lines.append(f"  {st.path.name}: {e.name:<15} step {e.step:>7}  [{e.low}, {e.high}]"
                             f"  {e.signal}{tag}")
        step = max((int(s[-1]) for n in trace.names() for s in [trace.series(n)[0]] if s.size),
                   default=None)
        found = resolve_all(trace.names(), self.config)  # shown under the built-in names
        st.values = {ROLES[r]: float(trace.series(found[r])[1][-1])
                     for r in ("train_acc", "val_acc") if r in found and trace.series(found[r])[1].size}
        if step != st.step or status != st.status:
            st.step, st.status = step, status
            st.run_class = res.run_class + ("?" if res.censored or not finished else "")
            lines.append(self.progress_line(st))
        if finished and not st.done:
            st.done = True
            lines.append(f"= {st.path.name}: {status}, class {res.run_class} - {res.class_reason}")
        elif not finished:
            st.done = False  # resumed
        return lines

    @staticmethod
    def progress_line(st: _RunState) -> str:
        vals = "  ".join(f"{k} {v:.3f}" for k, v in st.values.items())
        return f"  {st.path.name:<40} {st.status:<8} step {st.step if st.step is not None else '-':>7}  {vals}  class {st.run_class}"

    def table(self) -> str:
        """One line per run: status, last step, accuracies, class so far, events."""
        rows = [f"{'run':<40} {'status':<8} {'step':>7}  {'train/acc':>9} {'val/acc':>8}  "
                f"{'class':<15} events"]
        for st in self.runs.values():
            ev = ", ".join(f"{k}@{v}" for k, v in st.reported.items()) or "-"
            tr, va = st.values.get("train/acc"), st.values.get("val/acc")
            rows.append(f"{st.path.name:<40} {st.status:<8} {st.step if st.step is not None else '-':>7}  "
                        f"{'-' if tr is None else f'{tr:.3f}':>9} {'-' if va is None else f'{va:.3f}':>8}  "
                        f"{st.run_class:<15} {ev}" + (f"  ({st.error})" if st.error else ""))
        return "\n".join(rows)


def watch(root, *, once: bool = False, interval: float = 2.0, config: AnalysisConfig = AnalysisConfig(),
          stale_s: float = 120.0, out=None, max_polls: int | None = None) -> int:
    """Follow the runs under ``root`` until Ctrl-C (or one pass with ``once``); return 0."""
    if not interval > 0:
        raise ValueError(f"--interval must be > 0 seconds, got {interval}")
    out = out or sys.stdout
    w = Watcher(root, config, stale_s, must_exist=once)
    if not Path(root).exists():  # like TensorBoard: wait for the training to create it
        print(f"waiting for {root} to appear (Ctrl-C to stop)", file=out, flush=True)
    polls = 0
    try:
        while True:
            for line in w.poll():
                if not once:
                    print(line, file=out, flush=True)
            polls += 1
            if once or (max_polls is not None and polls >= max_polls):
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        print("", file=out)
    print(w.table(), file=out, flush=True)
    return 0

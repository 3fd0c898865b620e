"""PhaseMonitor: phase events while training, with the offline analyzer's own detectors.

Every ``every`` steps (checked after each validation, when new accuracies exist) it reads the
few scalar series the live detectors need -- from the run's trace store when a
``TraceLogger`` is attached (flushed first, so online and offline see the same rows), else
from ``trainer.callback_metrics`` -- and runs ``phasewatch.analysis.watch.live_events``
(``threshold_event`` / ``detect_spikes`` / ``classify_run`` of the analyzer). Each confirmed
event (``memorization``, ``generalization``, ``slingshot``, ``diverged``) is written once with
``store.log_event`` (payload: interval, evidence, ``detected_at``). A check whose read of the
live store fails (an I/O error while another process touches the file) warns and is tried
again at the next check; only ``READ_TRIES`` failures in a row disable the monitor.

Options:
- ``stop_after_generalization=N``: ``trainer.should_stop`` once the run is ``N`` steps past the
  confirmed generalization step (sweeps stop paying for a run that is done).
- Adaptive cadence: while a transition is under way (val accuracy left its plateau by
  ``dense_rise`` but generalization is not confirmed, and for ``dense_after`` steps after it)
  the monitor sets ``trainer.phasewatch_dense = True``. Other callbacks may read it with
  ``dense_requested(trainer)``; ``CircuitCheckpoint(dense_every=N)`` then also probes every N
  steps. Nothing else is coupled.

At the end of fit it runs the full offline analysis (``analyze_run`` on the store, written to
``<run dir>/analysis/analysis.json``), logs the final-only events (transition fits, phase
boundaries) not yet logged, and pushes the result to every ``WandbLogger`` in
``trainer.loggers`` (see ``push_to_wandb``). W&B failures warn once and never stop training.

Overhead (measured, loaded 2-core box, ``scripts/bench_phase_monitor.py --check-cost``): one check
= a flush + a read of 4 series + the detectors, 11 ms at the end of a 4000-step config-A run
(less earlier); ``every=100`` -> 40 checks, < 0.5 s against ~10-100 s of training (<= ~4%);
the final analysis at fit end ~0.5 s; with a W&B logger the report figures add 3-9 s
(matplotlib; ``figures=False`` skips them) and the artifact a copy of the run dir.

Example:
    >>> mon = PhaseMonitor(every=100, stop_after_generalization=200)
    >>> mon.every, mon.stop_after_generalization
    (100, 200)
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl

from phasewatch.analysis.analyzer import AnalysisConfig, analyze_run, analyze_trace, write_analysis
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.store import TraceStoreError
from phasewatch.analysis.names import resolve, resolve_all
from phasewatch.analysis.watch import live_events

from ._base import LeanCallback, dense_requested
from .trace_logger import find_trace_logger
from .wandb_push import push_to_wandb

__all__ = ["PhaseMonitor", "dense_requested"]


class PhaseMonitor(LeanCallback):
    """Online phase events, optional early stop after generalization, W&B summary at the end.

    ``READ_TRIES``: consecutive failed reads of the live store before the monitor gives up.

    Args:
        every: check at most once per this many steps (after a validation).
        stop_after_generalization: stop this many steps after the confirmed generalization
            step (None: never stop).
        config: analyzer thresholds (the same object ``phasewatch analyze`` uses).
        confirm: samples that must follow a threshold event before it is reported (>= 3).
        dense_rise, dense_after: the adaptive-cadence flag (see module docstring).
        final_analysis: run the full analysis at the end of fit (analysis.json, final events).
        wandb: push the analysis to W&B loggers; ``figures`` adds the report PNGs as images,
            ``artifact`` the run directory (store, arrays, analysis) as an artifact.
        default: built by ``default_callbacks``: stands down (does nothing) when the trainer
            also has a PhaseMonitor that is not a default one (the user's configuration wins).
    """

    READ_TRIES = 3

    def __init__(self, every: int = 100, stop_after_generalization: int | None = None,
                 config: AnalysisConfig | None = None, confirm: int = 3, dense_rise: float = 0.05,
                 dense_after: int = 200, final_analysis: bool = True, wandb: bool = True,
                 figures: bool = True, artifact: bool = True, default: bool = False) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive int, got {every!r}")
        if stop_after_generalization is not None and (
                not isinstance(stop_after_generalization, int) or stop_after_generalization < 0):
            raise ValueError(f"stop_after_generalization must be None or an int >= 0, "
                             f"got {stop_after_generalization!r}")
        if confirm < 3:
            raise ValueError(f"confirm must be >= 3, got {confirm!r}")
        if not 0 < dense_rise < 1:
            raise ValueError(f"dense_rise must be in (0, 1), got {dense_rise!r}")
        self.every, self.stop_after_generalization = every, stop_after_generalization
        self.config = config or AnalysisConfig()
        self.confirm, self.dense_rise, self.dense_after = confirm, dense_rise, int(dense_after)
        self.final_analysis, self.wandb, self.figures, self.artifact = final_analysis, wandb, figures, artifact
        self.logged: dict[str, int] = {}        # event name -> step written to the store
        self.last_check: int | None = None
        self.stopped_at: int | None = None
        self.result = None                      # final AnalysisResult
        self._mem: dict[str, tuple[list, list]] = {}
        self._base_val: float | None = None
        self.checks = 0
        self._read_failures = 0  # consecutive checks whose read of the live store failed
        self.default = bool(default)
        self.active = True

    # ---- state ----
    def _make_state_key(self) -> str:
        return self._generate_state_key(every=self.every, default=self.default)

    def state_dict(self) -> dict[str, Any]:
        return {"logged": dict(self.logged), "last_check": self.last_check,
                "mem": {k: (list(s), list(v)) for k, (s, v) in self._mem.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.logged = dict(state_dict.get("logged", {}))
        self.last_check = state_dict.get("last_check")
        self._mem = {k: (list(s), list(v)) for k, (s, v) in state_dict.get("mem", {}).items()}

    # ---- hooks ----
    def setup(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule", stage: str) -> None:
        trainer.phasewatch_dense = False
        self.active = not (self.default and any(
            isinstance(c, PhaseMonitor) and not c.default for c in trainer.callbacks))

    def on_train_start(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        """On resume, events this monitor already wrote (at steps the resumed run keeps) count
        as logged, so a crash between a detection and the next checkpoint writes no duplicate."""
        lg = find_trace_logger(trainer)
        if lg is None or not self.active or not trainer.is_global_zero or not trainer.global_step:
            return
        from phasewatch.analysis.store_read import load_run
        try:
            with load_run(lg.log_dir) as run:
                for e in run.events():
                    if e["payload"].get("source") == "PhaseMonitor" and e["step"] <= trainer.global_step:
                        key = e["name"] if e["name"] != "slingshot" else f"slingshot@{e['step']}"
                        self.logged.setdefault(key, e["step"])
        except TraceStoreError as error:  # no store yet is normal; anything else is worth a word
            if (Path(lg.log_dir) / "trace.sqlite").exists():
                warnings.warn(f"PhaseMonitor could not read the events already stored in "
                              f"{lg.log_dir} ({error}); events may be logged twice.", RuntimeWarning)

    def _trace(self, trainer: "pl.Trainer"):
        lg = find_trace_logger(trainer)
        store = None if lg is None else lg.store
        if store is not None:
            from phasewatch.analysis.watch import read_live_trace
            store.flush()
            return read_live_trace(lg.log_dir, self.config)[0], store
        step = int(trainer.global_step)
        for name in resolve_all(trainer.callback_metrics, self.config).values():
            if name in trainer.callback_metrics:
                s, v = self._mem.setdefault(name, ([], []))
                if not s or s[-1] != step:
                    s.append(step)
                    v.append(float(trainer.callback_metrics[name]))
        return MemoryTrace({k: (np.array(s), np.array(v)) for k, (s, v) in self._mem.items()}), None

    def on_validation_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self.active:
            return
        step = int(trainer.global_step)
        if find_trace_logger(trainer) is None:
            self._trace(trainer)  # keep accumulating the fallback series at every validation
        if self.last_check is not None and step - self.last_check < self.every:
            return
        self.last_check = step
        try:
            self.check(trainer, step)
        except TraceStoreError as error:  # a read of the live store; the next check reads again
            self._read_failures += 1
            if self._read_failures >= self.READ_TRIES:
                raise  # the failure boundary disables the monitor, with its own warning
            warnings.warn(f"PhaseMonitor: could not read the live trace at step {step} ({error}); "
                          f"reading it again at the next check", RuntimeWarning)
        else:
            self._read_failures = 0

    def check(self, trainer: "pl.Trainer", step: int) -> list:
        """Run the live detectors now; log new events; update the dense flag and early stop."""
        self.checks += 1
        trace, store = self._trace(trainer)
        res, confirmed = live_events(trace, self.config, self.confirm)
        new = []
        for e in confirmed:
            if e.name in self.logged and not e.name == "slingshot":
                continue
            key = e.name if e.name != "slingshot" else f"slingshot@{e.step}"
            if key in self.logged:
                continue
            self.logged[key] = e.step
            new.append(e)
            if store is not None:
                store.log_event(e.name, e.step, e.signal, {"low": e.low, "high": e.high,
                                                          "evidence": e.evidence, "detected_at": step,
                                                          "source": "PhaseMonitor"})
        gen = self.logged.get("generalization")
        names = trace.names()
        val = resolve("val_acc", names, self.config.val_acc)
        dense = False
        if val is not None and gen is None:
            s, v = trace.series(val)
            mem = self.logged.get("memorization")
            if mem is not None:
                if self._base_val is None:
                    self._base_val = float(np.median(v[(s >= mem)][:5])) if np.any(s >= mem) else None
                if self._base_val is not None and float(np.median(v[-3:])) - self._base_val >= self.dense_rise:
                    dense = True
        elif gen is not None and step - gen <= self.dense_after:
            dense = True
        trainer.phasewatch_dense = dense
        if (gen is not None and self.stop_after_generalization is not None
                and step >= gen + self.stop_after_generalization and not trainer.should_stop):
            trainer.should_stop = True
            self.stopped_at = step
            if store is not None:
                store.set_meta("phasewatch_stopped", {"step": step, "generalization": gen,
                                                      "after": self.stop_after_generalization})
        return new

    def on_fit_end(self, trainer: "pl.Trainer", pl_module: "pl.LightningModule") -> None:
        if not trainer.is_global_zero or not self.active:
            return
        if self.final_analysis:
            try:
                self._finish(trainer)
            except Exception as e:  # noqa: BLE001 - an analysis bug must not fail a finished fit
                warnings.warn(f"PhaseMonitor: final analysis failed ({type(e).__name__}: {e}); "
                              "run `phasewatch analyze` on the run directory", RuntimeWarning)
        trainer.phasewatch_dense = False

    def _finish(self, trainer: "pl.Trainer") -> None:
        step = int(trainer.global_step)
        if self.last_check != step:
            self.check(trainer, step)
        lg = find_trace_logger(trainer)
        store = None if lg is None else lg.store
        if store is not None:
            store.flush()
            res = analyze_run(lg.log_dir, self.config)
            write_analysis(res, lg.log_dir)
            for e in res.events:
                if e.step is None or e.name in self.logged or e.name == "slingshot":
                    continue
                self.logged[e.name] = e.step
                store.log_event(e.name, e.step, e.signal, {"low": e.low, "high": e.high,
                                                          "evidence": e.evidence, "source": "final"})
            store.set_meta("phasewatch", {"run_class": res.run_class, "censored": res.censored,
                                          "t_mem": _step(res, "memorization"),
                                          "t_gen": _step(res, "generalization")})
            store.flush()
            run_dir = lg.log_dir
        else:
            res = analyze_trace(self._trace(trainer)[0], self.config)
            run_dir = None
        self.result = res
        if self.wandb:
            push_to_wandb(trainer, res, run_dir, figures=self.figures, artifact=self.artifact,
                          config=self.config)


def _step(res, name: str) -> int | None:
    e = res.event(name)
    return None if e is None else e.step

"""CircuitCheckpoint: run pluggable interpretability probes at a cadence.

The probe protocol (anything with these two members plugs in)::

    class Probe(Protocol):
        name: str
        def __call__(self, model: nn.Module, context: ProbeContext) -> ProbeResult: ...

``ProbeResult(scalars={name: float}, arrays={name: np.ndarray}, meta={key: json-able})``;
names are logged as given (use a prefix such as ``circuit/`` or ``attn/``). The probe is called
with the model in eval mode under ``torch.no_grad()``; ``context`` carries the trainer,
the LightningModule, the step, the task (``pl_module.task`` / ``datamodule.task`` or None)
and ``state``, a dict private to the probe that persists between calls (and across resume, when
it holds tensors / numbers / lists).

Failure policy (documented choice): a probe that raises is caught; every hook registered
during its call is removed (so the model is left exactly as before), training continues, and
ONE warning per probe is emitted (``rank_zero_warn``); later failures of the same probe are
counted in ``circuit/probe_failures/<name>``. Pass ``on_error="raise"`` to stop training with a
``RuntimeError`` naming the probe and step instead.

A probe may also define ``missing(model, task) -> str | None`` (what the model lacks for it) or
``applicable(model, task) -> bool``. At ``setup()`` a probe that cannot run stops the fit with
``CallbackSetupError`` naming what the model lacks -- the user asked for it -- unless the
checkpoint was built with ``optional=True`` (``default_callbacks`` does): then it is skipped
with one warning saying what is missing. The kept names go to the run meta ``circuit/probes``;
docs/your_model.md is the recipe for making a model probe-able.

Probes run on rank 0 only (they are not collectives; parameters are identical on every rank).

Example:
    >>> from phasewatch.callbacks import CircuitCheckpoint, FourierProbe, AttentionProbe
    >>> cb = CircuitCheckpoint([FourierProbe(), AttentionProbe()], cadence="log:20,max:100")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ._base import (CallbackError, CallbackSetupError, PeriodicCallback, dense_requested,
                    eval_mode, find_task, inner_model, log_array,
                    log_scalars, no_leaked_hooks, set_meta)

__all__ = ["CircuitCheckpoint", "Probe", "ProbeResult", "ProbeContext", "ProbeFailure"]


class ProbeFailure(CallbackError, RuntimeError):
    """A probe failed under ``on_error="raise"``: stops the fit."""


@dataclass
class ProbeResult:
    """What a probe returns: scalars (logged through every logger) and arrays (trace store)."""

    scalars: dict[str, float] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProbeContext:
    """Everything a probe may need besides the model."""

    trainer: Any
    pl_module: Any
    step: int
    task: Any = None
    state: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Probe(Protocol):
    """A named callable ``(model, context) -> ProbeResult``."""

    name: str

    def __call__(self, model: nn.Module, context: ProbeContext) -> ProbeResult: ...


class CircuitCheckpoint(PeriodicCallback):
    """Run ``probes`` at the steps ``cadence`` marks (see the module docstring).

    Args:
        probes: probe objects (``Probe`` protocol); names must be unique.
        cadence: ``"log:20,max:100"`` (default), ``"every:100"``, ...
        on_error: ``"warn"`` (default: remove its hooks, warn once, continue) or ``"raise"``.
        dense_every: while a ``PhaseMonitor`` reports a transition under way
            (``dense_requested``), also probe every this many steps; ``None``: cadence only.
        optional: skip probes that cannot run on this model with one warning each (default
            False: a probe that cannot run stops the fit at setup with the reason).
    """

    def __init__(self, probes: list[Any], cadence: Any = "log:20,max:100", on_error: str = "warn",
                 dense_every: int | None = None, optional: bool = False):
        super().__init__(cadence)
        if dense_every is not None and dense_every < 1:
            raise ValueError(f"dense_every must be >= 1 or None, got {dense_every}")
        self.dense_every = dense_every
        probes = list(probes)
        if not probes:
            raise ValueError("CircuitCheckpoint needs at least one probe, got []")
        for p in probes:
            if not isinstance(p, Probe):
                raise ValueError(f"{p!r} is not a probe: it needs a `name` and __call__(model, ctx)")
        names = [p.name for p in probes]
        if len(set(names)) != len(names):
            raise ValueError(f"probe names must be unique, got {names}")
        if on_error not in ("warn", "raise"):
            raise ValueError(f"on_error must be 'warn' or 'raise', got {on_error!r}")
        self.probes, self.on_error, self.optional = probes, on_error, bool(optional)
        self.active = list(probes)
        self.skipped: dict[str, str] = {}   # probe name -> what the model lacks
        self._states: dict[str, dict[str, Any]] = {n: {} for n in names}
        self._failures: dict[str, int] = {n: 0 for n in names}
        self._meta_done: set[str] = set()

    def _make_state_key(self) -> str:
        return self._generate_state_key(cadence=repr(self.cadence),
                                        probes=",".join(p.name for p in self.probes))

    def setup(self, trainer, pl_module, stage: str) -> None:
        model, task = inner_model(pl_module), find_task(trainer, pl_module)
        self.active = []
        for p in self.probes:
            lacks = _missing(p, model, task)
            if lacks is None:
                self.active.append(p)
                continue
            msg = (f"probe {p.name!r} cannot run on {type(model).__name__}: it lacks {lacks} "
                   "(recipe: docs/your_model.md)")
            if not self.optional:
                raise CallbackSetupError(msg)
            if p.name not in self.skipped:
                rank_zero_warn(f"phasewatch: default {msg}; skipped")
            self.skipped[p.name] = lacks

    def on_train_start(self, trainer, pl_module) -> None:
        set_meta(trainer, "circuit/probes", [p.name for p in self.active])
        if self.skipped:
            set_meta(trainer, "circuit/skipped", dict(self.skipped))
        if self._take(trainer.global_step):
            self.run_probes(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        dense = (self.dense_every is not None and step > self._last_step
                 and step % self.dense_every == 0 and dense_requested(trainer))
        if dense:
            self._last_step = step
        if dense or self._take(step):
            self.run_probes(trainer, pl_module)

    def run_probes(self, trainer, pl_module) -> dict[str, ProbeResult]:
        """Run every probe once now (rank 0); log and return the results."""
        if trainer is not None and not trainer.is_global_zero or not self.active:
            return {}
        model = inner_model(pl_module)
        step = int(trainer.global_step) if trainer is not None else 0
        task = find_task(trainer, pl_module)
        results: dict[str, ProbeResult] = {}
        for probe in self.active:
            ctx = ProbeContext(trainer, pl_module, step, task, self._states[probe.name])
            try:
                with no_leaked_hooks(pl_module), eval_mode(model):
                    res = probe(model, ctx)
                if not isinstance(res, ProbeResult):
                    raise TypeError(f"probe returned {type(res).__name__}, not ProbeResult")
            except Exception as err:  # noqa: BLE001 — the policy is to survive a probe
                self._fail(trainer, probe.name, step, err)
                continue
            results[probe.name] = res
            if trainer is not None:
                log_scalars(trainer, res.scalars)
                for name, arr in res.arrays.items():
                    log_array(trainer, name, arr)
                for key, val in res.meta.items():
                    if key not in self._meta_done:
                        set_meta(trainer, key, val)
                        self._meta_done.add(key)
        return results

    def _fail(self, trainer, name: str, step: int, err: Exception) -> None:
        if self.on_error == "raise":
            raise ProbeFailure(f"probe {name!r} failed at step {step}: {err!r}") from err
        self._failures[name] += 1
        if self._failures[name] == 1:
            rank_zero_warn(f"phasewatch: probe {name!r} failed at step {step} ({err!r}); its hooks "
                           "were removed and training continues; further failures are counted in "
                           f"circuit/probe_failures/{name}")
        if trainer is not None:
            log_scalars(trainer, {f"circuit/probe_failures/{name}": float(self._failures[name])})

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(probe_states=self._states, failures=dict(self._failures))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for name, st in state_dict.get("probe_states", {}).items():
            if name in self._states:
                self._states[name] = dict(st)
        self._failures.update(state_dict.get("failures", {}))


def _missing(probe: Any, model: nn.Module, task: Any) -> str | None:
    """What ``model`` lacks for ``probe`` (its ``missing``, else its ``applicable``), or None."""
    if hasattr(probe, "missing"):
        return probe.missing(model, task)
    if hasattr(probe, "applicable") and not probe.applicable(model, task):
        return f"what {type(probe).__name__}.applicable() checks"
    return None

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

Failure policy (documented choice): a probe's whole path - its call, the check of its result
(``probe_checks.check_result``: finite real scalars, numeric arrays, JSON meta), the logging
and its checkpointed state - is inside one boundary. A probe that raises is caught; every hook
registered during its call is removed (so the model is left exactly as before), training
continues, and ONE warning per probe is emitted (``rank_zero_warn``); later failures of the
same probe are counted in ``circuit/probe_failures/<name>``. A malformed result, or a state that
a ``weights_only=True`` checkpoint load could not restore, drops the probe for the rest of the
run (same single warning). Pass ``on_error="raise"`` to stop training with a ``RuntimeError``
naming the probe and step instead.

A probe may also define ``applicable(model, task) -> bool``; ``setup()`` drops probes that say
False (so one default set serves every model), logging the kept names in the run meta
``circuit/probes``.

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

from ._base import (PeriodicCallback, dense_requested, eval_mode, find_task, inner_model, log_array,
                    log_scalars, no_leaked_hooks, set_meta)
from .probe_checks import check_result, pack_state, unpack_state

__all__ = ["CircuitCheckpoint", "Probe", "ProbeResult", "ProbeContext"]


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
    """

    def __init__(self, probes: list[Any], cadence: Any = "log:20,max:100", on_error: str = "warn",
                 dense_every: int | None = None):
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
        self.probes, self.on_error = probes, on_error
        self.active = list(probes)
        self._states: dict[str, dict[str, Any]] = {n: {} for n in names}
        self._failures: dict[str, int] = {n: 0 for n in names}
        self._meta_done: set[str] = set()

    def _make_state_key(self) -> str:
        return self._generate_state_key(cadence=repr(self.cadence),
                                        probes=",".join(p.name for p in self.probes))

    def setup(self, trainer, pl_module, stage: str) -> None:
        model, task = inner_model(pl_module), find_task(trainer, pl_module)
        self.active = [p for p in self.probes
                       if not hasattr(p, "applicable") or p.applicable(model, task)]

    def on_train_start(self, trainer, pl_module) -> None:
        set_meta(trainer, "circuit/probes", [p.name for p in self.active])
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
        for probe in list(self.active):
            ctx = ProbeContext(trainer, pl_module, step, task, self._states[probe.name])
            try:  # the boundary: compute, check, log; a malformed result drops the probe
                with no_leaked_hooks(pl_module), eval_mode(model):
                    res = probe(model, ctx)
                if not isinstance(res, ProbeResult):
                    raise _Malformed(f"probe returned {type(res).__name__}, not ProbeResult")
                try:
                    scalars, arrays, meta = check_result(res)
                except ValueError as e:
                    raise _Malformed(str(e)) from None
                if trainer is not None:
                    log_scalars(trainer, scalars)
                    for name, arr in arrays.items():
                        log_array(trainer, name, arr)
                    for key, val in meta.items():
                        if key not in self._meta_done:
                            set_meta(trainer, key, val)
                            self._meta_done.add(key)
            except Exception as err:  # noqa: BLE001 — the policy is to survive a probe
                self._fail(trainer, probe.name, step, err, drop=isinstance(err, _Malformed))
                continue
            results[probe.name] = res
        return results

    def _fail(self, trainer, name: str, step: int | None, err: Exception, drop: bool = False) -> None:
        where = f"at step {step}" if step is not None else "while saving a checkpoint"
        if self.on_error == "raise":
            raise RuntimeError(f"probe {name!r} failed {where}: {err!r}") from err
        self._failures[name] += 1
        if drop:
            self.active = [p for p in self.active if p.name != name]
        if self._failures[name] == 1:
            then = ("it is dropped for the rest of the run" if drop else
                    f"training continues; further failures are counted in circuit/probe_failures/{name}")
            rank_zero_warn(f"phasewatch: probe {name!r} failed {where} ({err!r}); its hooks "
                           f"were removed and {then}")
        if trainer is not None:
            log_scalars(trainer, {f"circuit/probe_failures/{name}": float(self._failures[name])})

    def state_dict(self) -> dict[str, Any]:
        """Cadence, failure counts and each active probe's state, packed so that a
        ``weights_only=True`` load restores it; a state that cannot be is a probe failure."""
        state = super().state_dict()
        packed = {}
        for probe in list(self.active):
            try:
                packed[probe.name] = pack_state(self._states[probe.name])
            except ValueError as err:
                self._fail(None, probe.name, None, err, drop=True)
        state.update(probe_states=packed, failures=dict(self._failures))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        for name, st in state_dict.get("probe_states", {}).items():
            if name in self._states:
                self._states[name] = dict(unpack_state(st))
        self._failures.update(state_dict.get("failures", {}))


class _Malformed(ValueError):
    """A probe returned something that is not a valid ProbeResult."""

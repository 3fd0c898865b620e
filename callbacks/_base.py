"""Shared plumbing for phasewatch callbacks: cadence, logging helpers, eval mode, hook hygiene.

Internal module; the public names are re-exported from ``phasewatch.callbacks``.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from typing import Any, Iterator

import pytorch_lightning as pl
import torch
from torch import nn

from .cadence import Cadence
# logging: scalars through every Lightning logger, arrays to the trace store (rank 0 writes)
from .trace_logger import find_trace_logger, log_array, log_scalars, set_meta  # noqa: F401


def run_dir(trainer: "pl.Trainer") -> str | None:
    """The run directory: the TraceLogger's ``log_dir``, else the first logger's, else None."""
    lg = find_trace_logger(trainer)
    if lg is not None:
        return str(lg.log_dir)
    for lg in trainer.loggers:
        if getattr(lg, "log_dir", None):
            return str(lg.log_dir)
    return None


# ---- model helpers --------------------------------------------------------------------------
def dense_requested(trainer: "pl.Trainer") -> bool:
    """True while a PhaseMonitor reports a transition under way (sample more densely)."""
    return bool(getattr(trainer, "phasewatch_dense", False))


def inner_model(pl_module: nn.Module) -> nn.Module:
    """``pl_module.model`` when it is an ``nn.Module`` (phasewatch's PhaseModule), else the module."""
    m = getattr(pl_module, "model", None)
    return m if isinstance(m, nn.Module) else pl_module


def find_task(trainer, pl_module) -> Any:
    """``pl_module.task`` or ``trainer.datamodule.task`` (phasewatch TaskData), else None."""
    task = getattr(pl_module, "task", None)
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if task is None and dm is not None:
        task = getattr(dm, "task", None)
    return task


def compile_include(include: str | None) -> "re.Pattern[str] | None":
    """The compiled module-name filter, or ValueError naming the bad regex."""
    if include is None:
        return None
    try:
        return re.compile(include)
    except re.error as err:
        raise ValueError(f"include is not a valid regex: {include!r} ({err})") from None


def module_of(param_name: str) -> str:
    """``"blocks.0.attn.W_Q"`` -> ``"blocks.0.attn"`` (a top-level parameter is its own module)."""
    return param_name.rsplit(".", 1)[0] if "." in param_name else param_name


def global_norm(tensors: list[torch.Tensor]) -> float:
    """L2 norm of all ``tensors`` together (one fused kernel, summed in float64)."""
    return float(torch.stack(torch._foreach_norm(tensors)).double().square().sum().sqrt())


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put ``module`` (and every submodule) in eval mode and ``no_grad``; restore modes after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        with torch.no_grad():
            yield module
    finally:
        for m, was in modes:
            m.training = was


_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
               "_backward_pre_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks_with_kwargs")


def hook_count(module: nn.Module) -> int:
    """Number of hooks registered on ``module`` and all its submodules."""
    return sum(len(getattr(m, d, {})) for m in module.modules() for d in _HOOK_DICTS[:4])


@contextlib.contextmanager
def no_leaked_hooks(module: nn.Module) -> Iterator[None]:
    """Remove, on exit, every hook that code inside the block registered on ``module``."""
    before = {(id(m), d): set(getattr(m, d, {}).keys())
              for m in module.modules() for d in _HOOK_DICTS}
    try:
        yield
    finally:
        for m in module.modules():
            for d in _HOOK_DICTS:
                hooks = getattr(m, d, None)
                if not hooks:
                    continue
                for k in set(hooks.keys()) - before.get((id(m), d), set()):
                    hooks.pop(k, None)


@contextlib.contextmanager
def forward_hooks(pairs: list[tuple[nn.Module, Any]]) -> Iterator[None]:
    """Register ``(module, fn)`` forward hooks for the duration of the block (try/finally)."""
    handles = []
    try:
        for mod, fn in pairs:
            handles.append(mod.register_forward_hook(fn))
        yield
    finally:
        for h in handles:
            h.remove()


# ---- base classes -------------------------------------------------------------------------
# Hooks Lightning calls on every callback at every step (or validation batch). Its dispatcher
# skips a hook that is not callable, so an instance of a LeanCallback subclass that does not
# override one gets ``None`` there (on the instance: the class keeps its methods, so super()
# calls and mixins still work): about 4 us per hook and step saved (measured: 6 hooks x 5
# callbacks is ~3% of config A's 4 ms step).
_PER_STEP_HOOKS = ("on_train_batch_start", "on_before_backward", "on_after_backward",
                   "on_before_optimizer_step", "on_before_zero_grad", "on_train_batch_end",
                   "on_validation_batch_start", "on_validation_batch_end")


#: every hook the failure boundary guards (``state_dict`` / ``load_state_dict`` stay unguarded:
#: a checkpoint that cannot be saved or restored must say so)
_GUARDED_HOOKS = tuple(n for n in dir(pl.Callback)
                       if (n.startswith("on_") or n in ("setup", "teardown"))
                       and callable(getattr(pl.Callback, n)))


class CallbackError(Exception):
    """Raised on purpose by a phasewatch callback: it passes the failure boundary and stops the
    fit with its message (subclasses: ``CallbackSetupError``, ``ProbeFailure``)."""


class CallbackSetupError(CallbackError, ValueError):
    """A callback cannot do what it was asked for on this run (a probe asked for by name that
    this model cannot run, a strict ExampleTracker without data)."""


class _Guarded:
    """``owner.<name>`` behind the failure boundary (an object, not a closure: deep copies and
    pickles of the callback rebind it to the copy)."""

    __slots__ = ("owner", "name")

    def __init__(self, owner: "LeanCallback", name: str) -> None:
        self.owner, self.name = owner, name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        owner = self.owner
        if owner.failure is not None:
            return None
        try:
            return getattr(type(owner), self.name)(owner, *args, **kwargs)
        except CallbackError:
            raise
        except Exception as err:  # noqa: BLE001 - the boundary: a callback never stops training
            owner._fail(self.name, err, args[0] if args else None)
            return None


class LeanCallback(pl.Callback):
    """A ``pl.Callback`` with a failure boundary, whose instances have ``None`` for the per-step
    hooks their class does not override (Lightning skips them).

    Failure boundary: an exception in any hook the class overrides is caught; the callback
    warns once (its name, the hook, the step, the error) and is disabled for the rest of the
    run (every hook returns at once); the run meta gets ``callbacks/failed/<name>``; training and
    the trace go on. ``CallbackError`` (raised on purpose) passes through and stops the fit.

    Example:
        >>> class Every(LeanCallback):
        ...     def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx): ...
        >>> cb = Every()
        >>> cb.on_before_backward is None, callable(cb.on_train_batch_end), cb.failure
        (True, True, None)
    """

    _unused_hooks: tuple[str, ...] = _PER_STEP_HOOKS
    _own_hooks: tuple[str, ...] = ()
    #: ``"<hook>: <error>"`` once the callback failed and was disabled, else None
    failure: "str | None" = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._unused_hooks = tuple(name for name in _PER_STEP_HOOKS
                                  if getattr(cls, name) is getattr(pl.Callback, name))
        cls._own_hooks = tuple(name for name in _GUARDED_HOOKS
                               if getattr(cls, name) is not getattr(pl.Callback, name))

    def __new__(cls, *args: Any, **kwargs: Any) -> "LeanCallback":
        self = super().__new__(cls)
        for name in cls._unused_hooks:
            setattr(self, name, None)
        for name in cls._own_hooks:
            setattr(self, name, _Guarded(self, name))
        return self

    def _fail(self, hook: str, err: Exception, trainer: Any) -> None:
        name = type(self).__name__
        step = getattr(trainer, "global_step", None)
        self.failure = f"{hook}: {type(err).__name__}: {err}"
        warnings.warn(f"phasewatch: {name}.{hook} failed at step {step} ({type(err).__name__}: {err}); "
                      f"{name} is disabled for the rest of this run; training and the trace go on",
                      RuntimeWarning, stacklevel=2)
        if isinstance(trainer, pl.Trainer):
            with contextlib.suppress(Exception):
                set_meta(trainer, f"callbacks/failed/{name}", {"hook": hook, "step": step,
                                                               "error": self.failure})

    @property
    def state_key(self) -> str:
        # Lightning formats this into a profiler name on every hook call: compute it once
        key = self.__dict__.get("_state_key_cache")
        if key is None:
            key = self._state_key_cache = self._make_state_key()
        return key

    def _make_state_key(self) -> str:
        return type(self).__qualname__


class PeriodicCallback(LeanCallback):
    """A callback that does its work at the steps its cadence marks as due.

    Subclasses call ``self._take(step)`` to check-and-claim a step (each step runs once,
    also under gradient accumulation and on resume) and extend ``state_dict``.
    """

    def __init__(self, cadence: "Cadence | str | int | None"):
        try:
            self.cadence = Cadence.parse(cadence)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: bad cadence {cadence!r}: {err}") from None
        self._last_step = -1

    def _make_state_key(self) -> str:
        return self._generate_state_key(cadence=repr(self.cadence))

    def _take(self, step: int) -> bool:
        if step <= self._last_step or not self.cadence.due(step):
            return False
        self._last_step = step
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_step = int(state_dict.get("last_step", -1))

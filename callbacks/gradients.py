"""GradientMonitor: gradient norm, per-module gradient norms, update size, gradient cosine.

For the optimizer step that takes theta_s to theta_{s+1} it logs, at step s+1 (the value of
``trainer.global_step`` after the step, the same axis as every other callback):
``grads/norm`` (global L2 norm, before clipping), ``grads/norm/<module>`` for modules matching
``include``, ``grads/update`` = ||theta_{s+1} - theta_s||, ``grads/update_rel`` =
||delta theta|| / ||theta_s||, and ``grads/cos_prev`` = cosine between this step's gradient and
the previous step's.

Gradients are read in ``on_before_optimizer_step``: under DDP they are already all-reduced
there (identical on every rank), so no collective is needed. Only due steps pay: the previous
gradient is copied only on the step before a due step (the cadence is deterministic), the
parameters only on a due step.

Example:
    >>> from phasewatch.callbacks import GradientMonitor
    >>> cb = GradientMonitor(cadence="every:50", include=r"^blocks")
"""

from __future__ import annotations

from typing import Any

import torch

from ._base import (PeriodicCallback, compile_include, global_norm, inner_model, log_scalars,
                    module_of)

__all__ = ["GradientMonitor"]


class GradientMonitor(PeriodicCallback):
    """Gradient statistics at a cadence (logged names in the module docstring).

    Args:
        cadence: ``Cadence`` / ``"every:50"`` / ``"log:20,max:100"``.
        include: regex on module names for per-module gradient norms; None = none.
        update: log the update size (copies the parameters on due steps).
        cosine: log the cosine with the previous step's gradient (copies the gradient on the
            step before a due step).
    """

    def __init__(self, cadence: Any = "log:20,max:100", include: str | None = None,
                 update: bool = True, cosine: bool = True):
        super().__init__(cadence)
        self._pat = compile_include(include)
        self.include = include
        self.update = bool(update)
        self.cosine = bool(cosine)
        self._prev_grad: list[torch.Tensor] | None = None
        self._prev_step = -1
        self._pending: dict[str, float] | None = None
        self._before: list[torch.Tensor] | None = None

    def _make_state_key(self) -> str:
        return self._generate_state_key(cadence=repr(self.cadence), include=self.include)

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._pending, self._before, self._prev_grad = None, None, None

    def _named(self, pl_module) -> list[tuple[str, torch.Tensor]]:
        return [(n, p) for n, p in inner_model(pl_module).named_parameters() if p.requires_grad]

    # No @torch.no_grad() on these per-step hooks: entering it cost ~20 us per step, more than
    # the hook's own check; every tensor used here is detached, so no graph is built anyway.
    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step + 1  # the step this update produces
        due_now = step > self._last_step and self.cadence.due(step) and self._pending is None
        keep = self.cosine and self.cadence.due(step + 1)
        if not (due_now or keep):
            self._prev_grad = None
            return
        named = [(n, p) for n, p in self._named(pl_module) if p.grad is not None]
        if not named:
            return
        if due_now:
            grads = [p.grad.detach().float() for _, p in named]
            norm = global_norm(grads)
            out = {"grads/norm": norm}
            if self._pat is not None:
                groups: dict[str, list[torch.Tensor]] = {}
                for (n, _), g in zip(named, grads):
                    module = module_of(n)
                    if self._pat.search(module):
                        groups.setdefault(module, []).append(g)
                for module, gs in groups.items():
                    out[f"grads/norm/{module}"] = global_norm(gs)
            if self.cosine and self._prev_grad is not None and self._prev_step == step - 1 \
                    and len(self._prev_grad) == len(grads):
                dot = sum(float((a.flatten() @ b.flatten()).double())
                          for a, b in zip(grads, self._prev_grad))
                den = norm * global_norm(self._prev_grad)
                out["grads/cos_prev"] = dot / den if den > 0 else float("nan")
            self._pending = out
            if self.update:
                self._before = [p.detach().clone() for _, p in named]
        # keep this gradient only if the next step is due (deterministic cadence)
        if keep:
            self._prev_grad = [p.grad.detach().float().clone() for _, p in named]
            self._prev_step = step
        else:
            self._prev_grad = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._pending is None or not self._take(trainer.global_step):
            return
        out = self._pending
        if self._before is not None:
            after = [p.detach() for n, p in self._named(pl_module) if p.grad is not None]
            if len(after) == len(self._before):
                diff = [a.float() - b.float() for a, b in zip(after, self._before)]
                upd = global_norm(diff)
                base = global_norm([b.float() for b in self._before])
                out["grads/update"] = upd
                out["grads/update_rel"] = upd / base if base > 0 else float("nan")
        self._pending, self._before = None, None
        log_scalars(trainer, out)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._prev_grad is not None:  # so a resumed run logs the same grads/cos_prev
            state["prev_grad"] = [g.cpu().clone() for g in self._prev_grad]
            state["prev_step"] = self._prev_step
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "prev_grad" in state_dict:
            self._prev_grad = [g.clone() for g in state_dict["prev_grad"]]
            self._prev_step = int(state_dict["prev_step"])

    def on_fit_start(self, trainer, pl_module) -> None:
        if self._prev_grad is not None:  # restored from a checkpoint: move to the model's device
            dev = next(inner_model(pl_module).parameters()).device
            self._prev_grad = [g.to(dev) for g in self._prev_grad]

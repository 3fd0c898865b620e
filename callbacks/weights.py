"""WeightNormMonitor: total squared weight norm (Nanda's progress measure) and friends.

Logs at each due step (``trainer.global_step``, after the optimizer step):
``weights/sum_sq`` (sum of theta^2 over all trainable parameters), ``weights/l2``,
``weights/dist_init`` (||theta_t - theta_0|| / ||theta_0||, theta_0 = weights at the start of
fit, kept on the model's device with its norm computed once, and in the callback state so
resume is exact), ``weights/norm/<module>`` for modules whose
name matches ``include`` (regex), and with ``spectral=True`` ``weights/spectral/<param>`` and
``weights/stable_rank/<param>`` (||W||_F^2 / ||W||_2^2) for matching 2-D weights.

Parameters are identical on every DDP rank, so no collective is needed; loggers write on rank 0.
Cost: one fused norm over the parameters (~50 us for 10^5 parameters on CPU) per due step;
spectral norms cost an SVD per matrix.

Example:
    >>> from phasewatch.callbacks import WeightNormMonitor
    >>> cb = WeightNormMonitor(cadence="log:20", include=r"^(embed|blocks\\.0)", spectral=True)
"""

from __future__ import annotations

from typing import Any

import torch

from ._base import (PeriodicCallback, compile_include, global_norm, inner_model, log_scalars,
                    module_of)

__all__ = ["WeightNormMonitor"]


class WeightNormMonitor(PeriodicCallback):
    """Weight norms at a cadence (see the module docstring for the logged names).

    Args:
        cadence: ``Cadence`` / ``"log:20,max:100"`` / ``N`` (every N steps).
        include: regex on module names (of the probed model) for per-module norms; None = none.
        spectral: also spectral norm and stable rank of matching 2-D weights (all 2-D weights
            when ``include`` is None).
        dist_init: log ``weights/dist_init`` (keeps a copy of theta_0 in the checkpoint).
    """

    def __init__(self, cadence: Any = "log:20,max:100", include: str | None = None,
                 spectral: bool = False, dist_init: bool = True):
        super().__init__(cadence)
        compile_include(include)
        self.include = include
        self.spectral = bool(spectral)
        self.dist_init = bool(dist_init)
        self._init: dict[str, torch.Tensor] | None = None
        self._init_norm: float | None = None
        self._names: list[str] = []
        self._groups: dict[str, list[int]] = {}
        self._matrices: list[int] = []

    def _make_state_key(self) -> str:
        return self._generate_state_key(cadence=repr(self.cadence), include=self.include, spectral=self.spectral)

    def setup(self, trainer, pl_module, stage: str) -> None:
        model = inner_model(pl_module)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError(f"WeightNormMonitor: {type(model).__name__} has no trainable parameters")
        self._names = [n for n, _ in named]
        pat = compile_include(self.include)
        self._groups = {}
        for i, name in enumerate(self._names):
            module = module_of(name)
            if pat is not None and pat.search(module):
                self._groups.setdefault(module, []).append(i)
        self._matrices = [i for i, (n, p) in enumerate(named)
                          if p.ndim == 2 and (pat is None or pat.search(n))] if self.spectral else []

    def _params(self, pl_module) -> list[torch.Tensor]:
        model = inner_model(pl_module)
        by_name = dict(model.named_parameters())
        return [by_name[n] for n in self._names]

    def on_train_start(self, trainer, pl_module) -> None:
        if self.dist_init and self._init is None:
            self._init = {n: p.detach().to(torch.float32, copy=True)
                          for n, p in zip(self._names, self._params(pl_module))}
            self._init_norm = None
        if self._take(trainer.global_step):
            self._log(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._take(trainer.global_step):
            self._log(trainer, pl_module)

    @torch.no_grad()
    def compute(self, pl_module) -> dict[str, float]:
        """The scalars for the current weights (also usable outside a Trainer)."""
        params = [p.detach().float() for p in self._params(pl_module)]
        norms = torch.stack(torch._foreach_norm(params)).double()
        sq = norms.square()
        out = {"weights/sum_sq": float(sq.sum()), "weights/l2": float(sq.sum().sqrt())}
        if self.dist_init and self._init is not None:
            if next(iter(self._init.values())).device != params[0].device:  # e.g. restored on CPU
                self._init = {n: t.to(params[0].device) for n, t in self._init.items()}
            init = [self._init[n] for n in self._names]
            if self._init_norm is None:
                self._init_norm = global_norm(init)
            num = global_norm(torch._foreach_sub(params, init))
            den = self._init_norm
            out["weights/dist_init"] = num / den if den > 0 else float("nan")
        for module, idx in self._groups.items():
            out[f"weights/norm/{module}"] = float(sq[idx].sum().sqrt())
        for i in self._matrices:
            w = params[i]
            s = torch.linalg.svdvals(w.double())
            out[f"weights/spectral/{self._names[i]}"] = float(s[0])
            out[f"weights/stable_rank/{self._names[i]}"] = (
                float(s.square().sum() / s[0].square()) if s[0] > 0 else float("nan"))
        return out

    def _log(self, trainer, pl_module) -> None:
        log_scalars(trainer, self.compute(pl_module))

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._init is not None:
            state["init"] = {k: v.to("cpu", copy=True) for k, v in self._init.items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "init" in state_dict:
            self._init = {k: v.clone() for k, v in state_dict["init"].items()}
            self._init_norm = None

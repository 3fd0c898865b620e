"""Local learning coefficient (LLC) by SGLD localized at a checkpoint, and ``LLCProbe``.

Estimator (Lau et al. 2023; Hoogland et al. 2024; docs/science.md#local-learning-coefficient):
with n samples and the empirical loss ``L_n``, nbeta = n beta (default ``n / log n``, beta = 1/log n),
each chain starts at ``w*`` and draws ``w <- w - eps/2 (nbeta grad L_m(w) + gamma (w - w*)) +
N(0, eps)`` on minibatches ``L_m``; the estimate is ``lambda_hat = nbeta (E[L_m(w)] - L_n(w*))``
averaged over the draws after ``burn_in`` and over chains; the spread over chains is reported
with it. This is devinterp's SGLD (v1.3.2 ``SGLD`` + ``estimate_learning_coeff``), written
here so that it runs on any ``nn.Module`` without devinterp's dependencies.

Calibration matters: ``gamma`` must be small next to nbeta times the loss curvature, or the
localization shrinks the estimate (on a regular model E = d/2 * c/(c + gamma) for curvature c);
``eps`` must keep ``eps * nbeta * curvature`` well below 1. Check a setting on a model with a
known coefficient (a regular model with d parameters: d/2), as the tests do.

Example:
    >>> import torch
    >>> g = torch.Generator().manual_seed(0)
    >>> x = torch.randn(1000, 4, generator=g); y = x @ torch.ones(4) + 0.1 * torch.randn(1000, generator=g)
    >>> lin = torch.nn.Linear(4, 1)
    >>> w = torch.linalg.lstsq(torch.cat([x, torch.ones(1000, 1)], 1), y[:, None]).solution[:, 0]
    >>> with torch.no_grad():
    ...     _ = lin.weight.copy_(w[None, :4]), lin.bias.copy_(w[4:])
    >>> mse = lambda m, b: ((m(b[0])[:, 0] - b[1]) ** 2).mean()
    >>> est = estimate_llc(lin, mse, [(x, y)], n=1000, lr=3e-4, localization=1.0, draws=400)
    >>> abs(est.llc - 2.5) < 0.4   # d = 5 parameters: d / 2
    True
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .circuit import ProbeContext, ProbeResult

__all__ = ["LLCEstimate", "estimate_llc", "fitted_least_squares", "LLCProbe"]


@dataclass(frozen=True)
class LLCEstimate:
    """``llc`` (mean over chains), ``std`` (over chains), per-chain values and the settings."""

    llc: float
    std: float
    chains: tuple
    init_loss: float
    nbeta: float
    settings: dict


def estimate_llc(model: nn.Module, loss_fn: Callable[[nn.Module, Any], Tensor],
                 batches: Sequence[Any], n: int, *, lr: float = 1e-4, localization: float = 100.0,
                 nbeta: Optional[float] = None, chains: int = 4, draws: int = 200,
                 burn_in: int = 0, seed: int = 0) -> LLCEstimate:
    """SGLD estimate of the LLC at ``model``'s current weights (the model is not modified).

    Args:
        loss_fn: ``(model, batch) -> mean loss`` (the negative log-likelihood per sample).
        batches: minibatches, cycled in order; ``L_n(w*)`` is their mean loss at ``w*``.
        n: number of samples the loss stands for (sets nbeta = n / log n by default).
        lr, localization, nbeta: eps, gamma and n beta of the update (module docstring).
        chains, draws, burn_in: SGLD chains, draws per chain, draws discarded at the start.
    """
    for key, val in (("n", n), ("chains", chains), ("draws", draws)):
        if int(val) != val or val < 1:
            raise ValueError(f"{key}={val} must be a positive integer")
    if n < 2 or not lr > 0 or localization < 0 or not 0 <= burn_in < draws or not batches:
        raise ValueError(f"need n >= 2, lr > 0, localization >= 0, 0 <= burn_in < draws and "
                         f"batches; got n={n}, lr={lr}, localization={localization}, "
                         f"burn_in={burn_in}, draws={draws}, {len(batches)} batches")
    nbeta = float(nbeta) if nbeta is not None else n / math.log(n)
    work = copy.deepcopy(model)
    work.eval()
    params = [p for p in work.parameters() if p.requires_grad]
    anchor = [p.detach().clone() for p in params]
    with torch.no_grad():
        init_loss = float(np.mean([float(loss_fn(work, b)) for b in batches]))
    gen = torch.Generator(device=anchor[0].device).manual_seed(int(seed))
    values = []
    with torch.enable_grad():
        for _ in range(chains):
            with torch.no_grad():
                for p, a in zip(params, anchor):
                    p.copy_(a)
            losses = []
            for t in range(draws):
                loss = loss_fn(work, batches[t % len(batches)])
                grads = torch.autograd.grad(loss, params)
                losses.append(float(loss.detach()))
                with torch.no_grad():
                    for p, g, a in zip(params, grads, anchor):
                        drift = nbeta * g + localization * (p - a)
                        noise = torch.randn(p.shape, generator=gen, device=p.device, dtype=p.dtype)
                        p.add_(-lr / 2 * drift + math.sqrt(lr) * noise)
            values.append(nbeta * (float(np.mean(losses[burn_in:])) - init_loss))
    arr = np.asarray(values)
    if not np.all(np.isfinite(arr)):
        raise FloatingPointError(f"SGLD diverged (chain estimates {values}); lower lr={lr}")
    settings = {"lr": lr, "localization": localization, "chains": chains, "draws": draws,
                "burn_in": burn_in, "n": n, "batches": len(batches)}
    return LLCEstimate(float(arr.mean()), float(arr.std(ddof=1)) if chains > 1 else 0.0,
                       tuple(values), init_loss, nbeta, settings)


def fitted_least_squares(n: int = 1000, d_in: int = 10, seed: int = 0
                         ) -> tuple[nn.Linear, Tensor, Tensor]:
    """A regular model with a known coefficient, to check estimator settings on: ``nn.Linear(d_in,
    1)`` at its least-squares weights on ``n`` noisy linear examples (d = d_in + 1 parameters,
    LLC d/2 under the mean squared error).

    Example:
        >>> lin, x, y = fitted_least_squares(n=200, d_in=3)
        >>> sum(p.numel() for p in lin.parameters()), tuple(x.shape), tuple(y.shape)
        (4, (200, 3), (200,))
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    y = x @ torch.linspace(-1, 1, d_in) + 0.5 + 0.1 * torch.randn(n, generator=g)
    lin = nn.Linear(d_in, 1)
    w = torch.linalg.lstsq(torch.cat([x, torch.ones(n, 1)], 1), y[:, None]).solution[:, 0]
    with torch.no_grad():
        lin.weight.copy_(w[None, :d_in])
        lin.bias.copy_(w[d_in:])
    return lin, x, y


class LLCProbe:
    """LLC of the model at each probe step, for ``CircuitCheckpoint`` (not in the default set:
    it costs ``chains * draws`` forward/backward passes per call; use a log-spaced cadence).

    Data: ``x, y`` given, else the task's training set; minibatches of ``batch_size`` cycled;
    n = the number of examples. Loss: the LightningModule's ``loss_fn(logits, y)`` when it has
    one (phasewatch's PhaseModule), else cross-entropy. Logs ``llc/lambda_hat``, ``llc/std``
    (over chains), ``llc/init_loss`` and the array ``llc/chains``.

    Example:
        >>> from phasewatch.callbacks import CircuitCheckpoint, LLCProbe
        >>> cb = CircuitCheckpoint([LLCProbe(chains=4, draws=200)], cadence="log:5")
    """

    def __init__(self, x: Optional[Tensor] = None, y: Optional[Tensor] = None,
                 batch_size: int = 256, lr: float = 1e-4, localization: float = 100.0,
                 nbeta: Optional[float] = None, chains: int = 4, draws: int = 200,
                 burn_in: int = 50, seed: int = 0, name: str = "llc"):
        if (x is None) != (y is None):
            raise ValueError("give both x and y, or neither")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not 0 <= burn_in < draws:
            raise ValueError(f"burn_in={burn_in} must be in [0, draws={draws})")
        self.x, self.y, self.batch_size, self.name = x, y, batch_size, name
        self.kwargs = dict(lr=lr, localization=localization, nbeta=nbeta, chains=chains,
                           draws=draws, burn_in=burn_in, seed=seed)

    def applicable(self, model: nn.Module, task: Any) -> bool:
        return self.x is not None or getattr(task, "train_x", None) is not None

    def __call__(self, model: nn.Module, ctx: ProbeContext) -> ProbeResult:
        x, y = (self.x, self.y) if self.x is not None else (ctx.task.train_x, ctx.task.train_y)
        device = next(model.parameters()).device
        batches = [(x[i:i + self.batch_size].to(device), y[i:i + self.batch_size].to(device))
                   for i in range(0, len(x), self.batch_size)]
        crit = getattr(ctx.pl_module, "loss_fn", None)

        def loss(m: nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
            out = m(batch[0])
            if callable(crit):
                return crit(out, batch[1])
            return F.cross_entropy(out.flatten(0, -2), batch[1].flatten())

        est = estimate_llc(model, loss, batches, n=len(x), **self.kwargs)
        return ProbeResult({"llc/lambda_hat": est.llc, "llc/std": est.std,
                            "llc/init_loss": est.init_loss},
                           {"llc/chains": np.asarray(est.chains, dtype=np.float32)},
                           {"llc/settings": {**est.settings, "nbeta": est.nbeta}})

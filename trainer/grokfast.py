"""Grokfast gradient filters (Lee et al. 2024): amplify the slow gradient component.

EMA: ``mu <- alpha * mu + (1 - alpha) * g;  g <- g + lamb * mu`` (alpha 0.98, lamb 2).
MA:  ``g <- g + lamb * mean(last `window` gradients)`` (window 100, lamb 5).

Example:
    >>> f = GradFilter("ema", alpha=0.98, lamb=2.0)
    >>> # after loss.backward(): f.apply(model.named_parameters())
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Optional

import torch


class GradFilter:
    """Stateful gradient filter; ``state_dict`` round-trips for resume."""

    def __init__(self, kind: str, alpha: float = 0.98, lamb: float = 2.0, window: int = 100) -> None:
        if kind not in ("ema", "ma"):
            raise ValueError(f"model.grokfast must be 'ema', 'ma' or null, got {kind!r}")
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"model.grokfast_alpha must be in [0, 1), got {alpha}")
        if window < 1:
            raise ValueError(f"model.grokfast_window must be >= 1, got {window}")
        self.kind, self.alpha, self.lamb, self.window = kind, alpha, lamb, window
        self.ema: dict[str, torch.Tensor] = {}
        self.history: dict[str, deque] = {}

    @torch.no_grad()
    def apply(self, named_parameters: Iterable[tuple[str, torch.nn.Parameter]]) -> None:
        for name, param in named_parameters:
            if param.grad is None:
                continue
            grad = param.grad
            if self.kind == "ema":
                mu = self.ema.get(name)
                mu = grad.clone() if mu is None else mu.mul_(self.alpha).add_(grad, alpha=1 - self.alpha)
                self.ema[name] = mu
                grad.add_(mu, alpha=self.lamb)
            else:
                past = self.history.setdefault(name, deque(maxlen=self.window))
                past.append(grad.clone())
                if len(past) == self.window:
                    grad.add_(torch.stack(tuple(past)).mean(0), alpha=self.lamb)

    def state_dict(self) -> dict:
        return {"ema": self.ema, "history": {k: list(v) for k, v in self.history.items()}}

    def load_state_dict(self, state: Optional[dict]) -> None:
        if not state:
            return
        self.ema = dict(state["ema"])
        self.history = {k: deque(v, maxlen=self.window) for k, v in state["history"].items()}

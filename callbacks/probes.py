"""AblationProbe and AttentionProbe: generic probes for ``CircuitCheckpoint``.

AblationProbe — for any model with ``components() -> {name: (hook_module, index | None)}``
(TransformerLens style; all built-in phasewatch models): on a fixed probe set it replaces one
component's output by its mean over the probe set (``index`` selects a slice along dim 1, e.g.
one attention head of ``hook_z``) and measures the loss change. Logged: array
``circuit/ablation_importance`` (float32, components in sorted-name order, listed once in the
run meta ``circuit/ablation_components``), scalars ``circuit/size`` (number of components with
importance > ``threshold``), ``circuit/overlap`` (Jaccard index with the previous call's
circuit; 1.0 when both are empty) and ``circuit/base_loss``.

AttentionProbe — for models with ``*.hook_pattern`` modules ([B, heads, q, k] probabilities):
per-head attention entropy (nats, mean over examples and query positions). Array
``attn/entropy`` [n_layers, n_heads] and scalars ``attn/entropy/<layer>.head<h>``.

Probe inputs: ``x, y`` given, else the task's training set (first ``max_examples``).

Example:
    >>> from phasewatch.callbacks import CircuitCheckpoint, AblationProbe, AttentionProbe
    >>> cb = CircuitCheckpoint([AblationProbe(threshold=0.1), AttentionProbe()], cadence=500)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._base import forward_hooks
from .circuit import ProbeContext, ProbeResult

__all__ = ["AblationProbe", "AttentionProbe"]


def _probe_set(x, y, ctx: ProbeContext, max_examples: int):
    if x is None:
        task = ctx.task
        if task is None or getattr(task, "train_x", None) is None:
            raise ValueError("no probe set: pass x=, y= or use a module with a `task`")
        x, y = task.train_x, task.train_y
    return x[:max_examples], (None if y is None else y[:max_examples])


def _probe_set_missing(x, task) -> list[str]:
    if x is not None or getattr(task, "train_x", None) is not None:
        return []
    return ["a probe set (pass x=, y= to the probe, or give the module a `task` with train_x / train_y)"]


def _loss(logits: Tensor, y: Tensor) -> float:
    if logits.dim() == 3:
        logits, y = logits.flatten(0, 1), y.flatten()
    return float(nn.functional.cross_entropy(logits.float(), y))


class AblationProbe:
    """Mean-ablation importance of named components (see the module docstring).

    Args:
        threshold: loss increase above which a component is in the circuit.
        x, y: fixed probe set; default the task's training set.
        max_examples: cap on the probe set size.
        name: probe name.
    """

    def __init__(self, threshold: float = 0.1, x: Tensor | None = None, y: Tensor | None = None,
                 max_examples: int = 4096, name: str = "ablation"):
        if not threshold >= 0:
            raise ValueError(f"threshold must be >= 0, got {threshold!r}")
        if (x is None) != (y is None):
            raise ValueError("give both x and y, or neither")
        if not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
        self.threshold, self.x, self.y = threshold, x, y
        self.max_examples, self.name = max_examples, name

    def missing(self, model: nn.Module, task: Any) -> str | None:
        """What ``model`` / ``task`` lack for this probe (None: it can run)."""
        comps = getattr(model, "components", None)
        lacks = []
        if not callable(comps) or len(comps()) < 2:
            lacks.append("components() returning >= 2 named (module, index) components")
        lacks += _probe_set_missing(self.x, task)
        return "; ".join(lacks) or None

    def applicable(self, model: nn.Module, task: Any) -> bool:
        """True for models with more than one named component and a probe set."""
        return self.missing(model, task) is None

    def __call__(self, model: nn.Module, ctx: ProbeContext) -> ProbeResult:
        comps = model.components()
        names = sorted(comps)
        device = next(model.parameters()).device
        x, y = _probe_set(self.x, self.y, ctx, self.max_examples)
        x, y = x.to(device), y.to(device)
        cache: dict[str, Tensor] = {}

        def saver(nm):
            return lambda m, i, o: cache.__setitem__(nm, o.detach().mean(dim=0, keepdim=True))

        mods = {id(comps[n][0]): comps[n][0] for n in names}
        with forward_hooks([(m, saver(k)) for k, m in mods.items()]):
            base = _loss(model(x), y)
        means = {n: cache[id(comps[n][0])] for n in names}
        importance = np.zeros(len(names), dtype=np.float32)
        for i, n in enumerate(names):
            mod, idx = comps[n]
            mean = means[n]

            def ablate(m, inp, out, idx=idx, mean=mean):
                out = out.clone()
                if idx is None:
                    out[:] = mean
                else:
                    out[:, idx] = mean[:, idx]
                return out

            with forward_hooks([(mod, ablate)]):
                importance[i] = _loss(model(x), y) - base
        circuit = [n for n, v in zip(names, importance) if v > self.threshold]
        prev = ctx.state.get("circuit")
        scalars = {"circuit/size": float(len(circuit)), "circuit/base_loss": base}
        if prev is not None:
            union = set(prev) | set(circuit)
            scalars["circuit/overlap"] = len(set(prev) & set(circuit)) / len(union) if union else 1.0
        ctx.state["circuit"] = circuit
        return ProbeResult(scalars, {"circuit/ablation_importance": importance},
                           {"circuit/ablation_components": names})


class AttentionProbe:
    """Per-head attention entropy from every ``hook_pattern`` module.

    Args:
        x: probe inputs; default the task's training inputs (first ``max_examples``).
        max_examples: cap on the probe set size.
        name: probe name.
    """

    def __init__(self, x: Tensor | None = None, max_examples: int = 4096, name: str = "attention"):
        if not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
        self.x, self.max_examples, self.name = x, max_examples, name

    def missing(self, model: nn.Module, task: Any) -> str | None:
        """What ``model`` / ``task`` lack for this probe (None: it can run)."""
        lacks = [] if any(n.endswith("hook_pattern") for n, _ in model.named_modules()) else [
            "`hook_pattern` modules (attention probabilities [batch, heads, query, key])"]
        lacks += _probe_set_missing(self.x, task)
        return "; ".join(lacks) or None

    def applicable(self, model: nn.Module, task: Any) -> bool:
        """True for models with ``hook_pattern`` modules and a probe set."""
        return self.missing(model, task) is None

    def __call__(self, model: nn.Module, ctx: ProbeContext) -> ProbeResult:
        hooks = [(n.rsplit(".hook_pattern", 1)[0], m) for n, m in model.named_modules()
                 if n.endswith("hook_pattern")]
        if not hooks:
            raise ValueError(f"{type(model).__name__} has no `hook_pattern` modules")
        if self.x is not None:
            x = self.x[:self.max_examples]
        else:
            x, _ = _probe_set(None, None, ctx, self.max_examples)
        ent: dict[str, Tensor] = {}

        def grab(nm):
            def fn(m, i, o):
                pat = o.detach().float().clamp_min(1e-30)
                ent[nm] = -(pat * pat.log()).sum(-1).mean(dim=(0, 2))  # [heads]
            return fn

        with forward_hooks([(m, grab(n)) for n, m in hooks]):
            model(x.to(next(model.parameters()).device))
        table = torch.stack([ent[n] for n, _ in hooks]).cpu()
        scalars = {f"attn/entropy/{n}.head{h}": float(v)
                   for n, row in zip([n for n, _ in hooks], table) for h, v in enumerate(row)}
        return ProbeResult(scalars, {"attn/entropy": table.numpy().astype(np.float32)})

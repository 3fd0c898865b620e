"""InductionProbe: induction-head and in-context-learning measures for ``CircuitCheckpoint``.

Definitions (docs/science.md#induction-heads-and-in-context-learning; Olsson et al. 2022,
Elhage et al. 2021). On sequences where a segment starting at ``src`` reappears at ``dst``
(input position i holds sequence token i, the target at i is token i + 1):

- prefix-matching score of a head: mean attention from each repeated token (query ``dst + k``)
  to the token *after* its earlier occurrence (key ``src + k + 1``), k = 0 .. segment - 2;
- previous-token score: mean attention from position i to i - 1 (all i >= 1);
- copying score: positive-eigenvalue share ``sum |l| (Re l > 0) / sum |l|`` of the head's OV
  circuit through the unembedding (token -> logits, [V, V]); 0.5 for a random matrix, 1 for a
  pure copier (Elhage et al.'s ``sum l / sum |l|`` is ``2 share - 1`` for real eigenvalues);
- repeat loss: mean next-token loss on the predictable repeated tokens (targets dst+1 ..
  dst+segment-1); non-repeat loss: on every other target;
- ICL score: loss at position round(500/511 (T-1)) minus loss at round(50/511 (T-1)) (Olsson's
  "token 500 minus token 50" of a 512-token context, scaled to the T input positions 0..T-1);
  negative = in-context learning.

Minimal interface for a user's model: ``forward(x [B, T]) -> logits [B, T, V]`` and modules whose
name ends in ``hook_pattern`` called with the attention pattern ``[B, heads, T, T]`` at every
query position (TransformerLens names them ``blocks.<i>.attn.hook_pattern``). The copying score
needs ``ov_circuits() -> [layers, heads, V, V]``; without it the copying score is not logged.

Logged: arrays ``circuit/prefix_matching``, ``circuit/prev_token``, ``circuit/copying``
[layers, heads], ``circuit/repeat_loss_by_offset`` [segment - 1], ``circuit/loss_by_position`` [T];
scalars ``circuit/prefix_matching_max``, ``circuit/prev_token_max``, ``circuit/copying_max``,
``circuit/icl_score``, ``circuit/repeat_loss``, ``circuit/nonrepeat_loss`` and per head
``circuit/prefix_matching/<layer>.head<h>`` (and ``prev_token``, ``copying``).

Example:
    >>> from phasewatch.callbacks import CircuitCheckpoint, InductionProbe, RepeatSet
    >>> probes = RepeatSet.random(vocab=64, length=48, segment=12, n=256, seed=0)
    >>> cb = CircuitCheckpoint([InductionProbe(probes)], cadence="every:100")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._base import forward_hooks
from .circuit import ProbeContext, ProbeResult

__all__ = ["InductionProbe", "RepeatSet", "sample_repeats", "prefix_matching_scores",
           "previous_token_scores", "copying_scores", "icl_score", "repeat_mask"]


def sample_repeats(n: int, vocab: int, length: int, segment: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """``n`` random sequences [n, length] whose ``segment`` tokens from ``src`` reappear from a
    random later ``dst`` (``src < dst <= length - segment``); returns (seq, src, dst).

    The copy runs token by token, so a repeat that overlaps its source (``dst - src < segment``)
    makes the stretch periodic: every repeated token still equals the token ``dst - src`` earlier.
    Gaps down to 1 leave the canonical circuit (previous-token head + induction head) as the one
    solution for every gap; with gaps >= segment a head ``L`` positions back (any L <= segment)
    serves as well (measured: a 2-layer model formed lag-11/12 heads instead, see
    configs/induction_heads.yaml).

    Example:
        >>> seq, src, dst = sample_repeats(4, 10, 12, 3, torch.Generator().manual_seed(0))
        >>> bool(all((seq[i, s:s + 3] == seq[i, d:d + 3]).all() for i, (s, d) in
        ...          enumerate(zip(src.tolist(), dst.tolist()))))
        True
    """
    seq = torch.randint(0, vocab, (n, length), generator=generator)
    u = torch.rand(n, 2, generator=generator)
    src = (u[:, 0] * (length - segment)).long()                      # 0 .. length - segment - 1
    dst = src + 1 + (u[:, 1] * (length - segment - src)).long()      # src + 1 .. length - segment
    rows = torch.arange(n)
    for k in range(segment):  # in order: an overlapping repeat copies already-copied tokens
        seq[rows, dst + k] = seq[rows, src + k]
    return seq, src, dst


@dataclass(frozen=True, eq=False)
class RepeatSet:
    """Probe sequences: inputs ``x`` [N, T], targets ``y`` [N, T], repeat starts ``src``/``dst`` [N]."""

    x: Tensor
    y: Tensor
    src: Tensor
    dst: Tensor
    segment: int

    @classmethod
    def random(cls, vocab: int, length: int, segment: int, n: int = 256, seed: int = 0) -> "RepeatSet":
        """Uniform random tokens with one repeated segment (what the built-in task trains on)."""
        if segment < 2 or 2 * segment > length:
            raise ValueError(f"segment={segment} must be >= 2 and fit twice in length={length}")
        seq, src, dst = sample_repeats(n, vocab, length, segment, torch.Generator().manual_seed(seed))
        return cls(seq[:, :-1], seq[:, 1:], src, dst, segment)

    @classmethod
    def from_task(cls, task: Any, n: int) -> Optional["RepeatSet"]:
        """The task's evaluation set when it records repeat positions (built-in ``induction``)."""
        if getattr(task, "train_src", None) is None:
            return None
        return cls(task.train_x[:n], task.train_y[:n], task.train_src[:n], task.train_dst[:n],
                   int(task.segment))


def _queries(src: Tensor, dst: Tensor, segment: int) -> tuple[Tensor, Tensor]:
    """Query positions dst + k and their prefix-match keys src + k + 1, k < segment - 1: [N, seg-1]."""
    k = torch.arange(segment - 1, device=src.device)
    return dst[:, None] + k, src[:, None] + k + 1


def prefix_matching_scores(pattern: Tensor, src: Tensor, dst: Tensor, segment: int) -> Tensor:
    """pattern [N, H, T, T] -> [H]: mean attention from dst + k to src + k + 1.

    Example:
        >>> p = torch.zeros(1, 1, 6, 6); p[0, 0, 3, 1] = p[0, 0, 4, 2] = 1
        >>> prefix_matching_scores(p, torch.tensor([0]), torch.tensor([3]), 3)
        tensor([1.])
    """
    q, key = _queries(src, dst, segment)
    rows = torch.arange(len(src), device=src.device)[:, None]
    return pattern[rows, :, q, key].mean(dim=(0, 1))  # [N, seg-1, H] -> [H]


def previous_token_scores(pattern: Tensor) -> Tensor:
    """pattern [N, H, T, T] -> [H]: mean attention from position i to i - 1 (i >= 1)."""
    return pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(dim=(0, 2))


def copying_scores(ov: Tensor) -> Tensor:
    """ov [..., V, V] -> [...]: share of |eigenvalue| mass with positive real part.

    Example:
        >>> copying_scores(torch.stack([torch.eye(3), -torch.eye(3)]))
        tensor([1., 0.])
    """
    lam = torch.linalg.eigvals(ov.double())
    mag = lam.abs()
    return ((mag * (lam.real > 0)).sum(-1) / mag.sum(-1).clamp_min(1e-300)).float()


def repeat_mask(src: Tensor, dst: Tensor, segment: int, length: int) -> Tensor:
    """[N, T] bool: targets predictable from the earlier occurrence (targets dst+1 .. dst+seg-1)."""
    del src
    q = dst[:, None] + torch.arange(segment - 1, device=dst.device)
    mask = torch.zeros(len(dst), length, dtype=torch.bool, device=dst.device)
    return mask.scatter_(1, q, True)


def icl_score(loss_by_position: np.ndarray) -> float:
    """Loss at position round(500/511 (T-1)) minus at round(50/511 (T-1)) (Olsson et al. 2022:
    tokens 500 and 50 of 512, scaled to T positions).

    Example:
        >>> round(icl_score(np.linspace(4.0, 1.0, 47)), 3)
        -2.609
    """
    last = len(loss_by_position) - 1
    late, early = round(500 / 511 * last), round(50 / 511 * last)
    return float(loss_by_position[late] - loss_by_position[early])


def _pattern_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n.rsplit(".hook_pattern", 1)[0], m) for n, m in model.named_modules()
            if n.endswith("hook_pattern")]


class InductionProbe:
    """Prefix-matching, previous-token and copying scores per head, repeat / non-repeat loss,
    loss by position and the ICL score (see the module docstring).

    Args:
        probe_set: a :class:`RepeatSet`; default the task's evaluation set (built-in
            ``induction`` task), first ``max_examples``.
        max_examples: cap on the probe set size.
        name: probe name.

    Overhead: one forward pass on ``max_examples`` sequences plus one eigendecomposition of a
    [V, V] matrix per head (measured in ``scripts/bench_induction.py``).
    """

    def __init__(self, probe_set: Optional[RepeatSet] = None, max_examples: int = 128,
                 name: str = "induction"):
        if probe_set is not None and not isinstance(probe_set, RepeatSet):
            raise ValueError(f"probe_set must be a RepeatSet, got {type(probe_set).__name__}")
        if not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
        self.probe_set, self.max_examples, self.name = probe_set, max_examples, name

    def _set(self, task: Any) -> Optional[RepeatSet]:
        return self.probe_set or RepeatSet.from_task(task, self.max_examples)

    def applicable(self, model: nn.Module, task: Any) -> bool:
        """True for models with ``hook_pattern`` modules and a repeat probe set."""
        return bool(_pattern_modules(model)) and self._set(task) is not None

    def __call__(self, model: nn.Module, ctx: ProbeContext) -> ProbeResult:
        hooks = _pattern_modules(model)
        ps = self._set(ctx.task)
        if not hooks or ps is None:
            raise ValueError(f"{type(model).__name__}: InductionProbe needs `hook_pattern` modules "
                             "and a RepeatSet (or the built-in induction task)")
        device = next(model.parameters()).device
        n = min(self.max_examples, len(ps.x))
        x, y = ps.x[:n].to(device), ps.y[:n].to(device)
        src, dst = ps.src[:n].to(device), ps.dst[:n].to(device)
        T = x.shape[1]
        pm: dict[str, Tensor] = {}
        prev: dict[str, Tensor] = {}

        def grab(nm):
            def fn(m, i, pattern):
                if pattern.dim() != 4 or pattern.shape[-2:] != (T, T):
                    raise ValueError(f"{nm}.hook_pattern has shape {tuple(pattern.shape)}; the "
                                     f"probe needs [B, heads, {T}, {T}] (every query position)")
                pm[nm] = prefix_matching_scores(pattern.float(), src, dst, ps.segment)
                prev[nm] = previous_token_scores(pattern.float())
            return fn

        with forward_hooks([(m, grab(nm)) for nm, m in hooks]):
            logits = model(x)
        if logits.shape[:2] != (n, T):
            raise ValueError(f"model output {tuple(logits.shape)} is not per-position logits "
                             f"[{n}, {T}, vocab]")
        loss = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")  # [N, T]
        mask = repeat_mask(src, dst, ps.segment, T)
        offs = dst[:, None] + torch.arange(ps.segment - 1, device=device)
        by_offset = loss.gather(1, offs).mean(0).cpu().numpy()
        by_pos = loss.mean(0).cpu().numpy()
        layers = [nm for nm, _ in hooks]
        tables = {"prefix_matching": torch.stack([pm[nm] for nm in layers]).cpu(),
                  "prev_token": torch.stack([prev[nm] for nm in layers]).cpu()}
        ov = getattr(model, "ov_circuits", None)
        if callable(ov):
            tables["copying"] = copying_scores(ov()).cpu()
        scalars = {"circuit/repeat_loss": float(loss[mask].mean()),
                   "circuit/nonrepeat_loss": float(loss[~mask].mean()),
                   "circuit/icl_score": icl_score(by_pos)}
        arrays = {"circuit/repeat_loss_by_offset": by_offset.astype(np.float32),
                  "circuit/loss_by_position": by_pos.astype(np.float32)}
        for key, table in tables.items():
            scalars[f"circuit/{key}_max"] = float(table.max())
            arrays[f"circuit/{key}"] = table.numpy().astype(np.float32)
            for nm, row in zip(layers, table):
                scalars.update({f"circuit/{key}/{nm}.head{h}": float(v) for h, v in enumerate(row)})
        return ProbeResult(scalars, arrays, {"circuit/induction_layers": layers})

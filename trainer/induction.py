"""Induction-head task (a random segment repeated at a random later offset) and attention-only
transformers with 1+ layers (Olsson et al. 2022; see docs/science.md#induction-heads-and-in-context-learning).

Each sequence has ``length`` uniform random tokens; a random ``segment``-token stretch starting
at ``a`` is copied, token by token, to a random later start ``b`` (``a < b <= length - segment``;
a repeat overlapping its source makes the stretch periodic), so its position carries no
information: only an induction circuit (find the earlier occurrence of the current token, copy
the token after it) predicts the repeat at every gap ``b - a``. Models read ``x = seq[:-1]``
and predict ``y = seq[1:]`` at every position. Training batches are fresh each step (batch g is
a pure function of the seed and g); the fixed ``train_x`` / ``val_x`` sets are evaluation sets.

Example:
    >>> t = build_induction_task(vocab=16, length=20, segment=4, n_eval=8, seed=0)
    >>> t.train_x.shape, t.out_len
    (torch.Size([8, 19]), 19)
    >>> seq = torch.cat([t.train_x[:, :1], t.train_y], 1)
    >>> a, b = int(t.train_src[0]), int(t.train_dst[0])
    >>> bool((seq[0, a:a + 4] == seq[0, b:b + 4]).all())
    True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
from torch import Tensor, nn

from phasewatch.callbacks.induction import sample_repeats

from .tasks import TaskData, _generator
from .transformer import Attention

__all__ = ["InductionTask", "build_induction_task", "FreshBatches",
           "AttnOnlyTransformer"]


@dataclass(frozen=True, eq=False)
class InductionTask(TaskData):
    """TaskData plus where the repeat sits in each evaluation sequence and a fresh-batch sampler.

    ``train_src`` / ``train_dst`` (and ``val_*``): start of the first occurrence and of the
    repeat, in sequence positions (x position i holds sequence token i).
    """

    segment: int = 12
    seq_length: int = 48
    train_src: Optional[Tensor] = None
    train_dst: Optional[Tensor] = None
    val_src: Optional[Tensor] = None
    val_dst: Optional[Tensor] = None

    def sample(self, n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """A fresh batch ``(x, y)`` of ``n`` sequences."""
        seq, _, _ = sample_repeats(n, self.vocab_size, self.seq_length, self.segment, generator)
        return seq[:, :-1], seq[:, 1:]


def build_induction_task(vocab: int = 64, length: int = 48, segment: int = 12,
                         n_eval: int = 512, seed: int = 0) -> InductionTask:
    """The repeated-segment task; ``n_eval`` sequences each in the train / val evaluation sets."""
    for key, val in (("vocab", vocab), ("length", length), ("segment", segment), ("n_eval", n_eval)):
        if int(val) != val or val < 1:
            raise ValueError(f"{key}={val} must be a positive integer")
    if vocab < 2:
        raise ValueError(f"vocab={vocab} must be >= 2")
    if segment < 2 or 2 * segment > length:
        raise ValueError(f"segment={segment} must be >= 2 and fit twice in length={length}")
    sets = []
    for stream in (5, 6):
        seq, src, dst = sample_repeats(n_eval, vocab, length, segment, _generator(seed, stream))
        sets.append((seq[:, :-1], seq[:, 1:], src, dst))
    (tx, ty, ts, td), (vx, vy, vs, vd) = sets
    return InductionTask(name="induction", train_x=tx, train_y=ty, val_x=vx, val_y=vy,
                         vocab_size=vocab, n_classes=vocab, train_index=torch.arange(n_eval),
                         val_index=torch.arange(n_eval), segment=segment, seq_length=length,
                         train_src=ts, train_dst=td, val_src=vs, val_dst=vd)


class FreshBatches:
    """``steps`` fresh batches per epoch from ``task.sample``; batch g depends only on (seed, g).

    ``position()`` (batches already trained on, restored on resume) sets the first g, as in
    :class:`~phasewatch.trainer.data.TensorBatches`. Yields ``(x, y, index)`` with index -1.

    Example:
        >>> t = build_induction_task(vocab=8, length=10, segment=3, n_eval=2)
        >>> a = [x for x, _, _ in FreshBatches(t, 4, steps=2, seed=1)]
        >>> b = [x for x, _, _ in FreshBatches(t, 4, steps=1, seed=1, position=lambda: 1)]
        >>> bool((a[1] == b[0]).all())
        True
    """

    def __init__(self, task: InductionTask, batch_size: int, steps: int, seed: int = 0,
                 position: Callable[[], Optional[int]] = lambda: None) -> None:
        self.task, self.batch_size, self.steps, self.seed = task, batch_size, steps, seed
        self.position = position
        self._next = 0

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        first = self.position()
        first = self._next if first is None else first
        index = torch.full((self.batch_size,), -1, dtype=torch.long)
        for g in range(first, first + self.steps):
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + g)
            x, y = self.task.sample(self.batch_size, gen)
            self._next = g + 1
            yield x, y, index

    def state_dict(self) -> dict:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"data.seed {self.seed} differs from the checkpoint's "
                             f"{state['seed']}: resume with the run's own config")


class _Block(nn.Module):
    """Attention (+ optional ReLU MLP) residual block; ``ln`` reads the residual (pre-LN) or is
    the identity."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_mlp: int, layer_norm: bool):
        super().__init__()
        self.ln = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.attn = Attention(d_model, n_heads, d_head, std=1 / math.sqrt(d_model))
        self.mlp = (nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))
                    if d_mlp else None)
        self.hook_mlp_out = nn.Identity()


class AttnOnlyTransformer(nn.Module):
    """Causal transformer with ``n_layers`` attention-only blocks (``d_mlp > 0`` adds MLPs),
    learned token and position embeddings; logits at every position. ``layer_norm=True``: a
    LayerNorm before each block's attention and before the unembedding (pre-LN, as
    TransformerLens' attention-only models); the MLP, if any, reads the residual directly.

    Hooks (TransformerLens style, as the other built-in transformers): ``blocks[i].attn.hook_pattern``
    [B, H, T, T]; ``blocks[i].attn.hook_z`` [B, H, T, d_head] (may be replaced: ablation);
    ``blocks[i].hook_mlp_out`` [B, T, d_model] with MLPs. ``ov_circuits()`` [L, H, V, V]: the
    direct path token -> W_V -> W_O -> W_U of each head (for the copying score).

    Example:
        >>> m = AttnOnlyTransformer(vocab_size=10, seq_len=7, n_classes=10, d_model=16, n_heads=2)
        >>> m(torch.zeros(3, 7, dtype=torch.long)).shape, tuple(m.ov_circuits().shape)
        (torch.Size([3, 7, 10]), (2, 2, 10, 10))
    """

    def __init__(self, vocab_size: int, seq_len: int, n_classes: Optional[int] = None,
                 d_model: int = 64, n_heads: int = 4, d_head: Optional[int] = None,
                 n_layers: int = 2, d_mlp: int = 0, layer_norm: bool = False):
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers} must be >= 1")
        if d_head is None and d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}")
        n_classes = n_classes or vocab_size
        if n_classes != vocab_size:
            raise ValueError(f"n_classes={n_classes} must equal vocab_size={vocab_size} "
                             "(next-token prediction)")
        self.vocab_size, self.seq_len, self.n_classes = vocab_size, seq_len, n_classes
        d_head = d_head or d_model // n_heads
        std = 1 / math.sqrt(d_model)
        self.W_E = nn.Parameter(torch.randn(vocab_size, d_model) * std)
        self.W_pos = nn.Parameter(torch.randn(seq_len, d_model) * std)
        self.blocks = nn.ModuleList([_Block(d_model, n_heads, d_head, d_mlp, layer_norm)
                                     for _ in range(n_layers)])
        self.ln_final = nn.LayerNorm(d_model) if layer_norm else nn.Identity()
        self.W_U = nn.Parameter(torch.randn(d_model, vocab_size) * std)
        self.hook_neurons = nn.Identity()  # the last block's MLP neurons (when there are MLPs)

    def forward(self, x: Tensor) -> Tensor:
        """[B, T] tokens -> [B, T, vocab] next-token logits."""
        h = self.W_E[x] + self.W_pos[: x.shape[1]]
        last = len(self.blocks) - 1
        for i, blk in enumerate(self.blocks):
            at = blk.attn
            pattern, z = at.attend(*at.qkv(blk.ln(h)))
            at.hook_pattern(pattern)
            h = h + at.out(at.hook_z(z).transpose(1, 2))
            if blk.mlp is not None:
                post = blk.mlp[1](blk.mlp[0](h))
                if i == last:
                    post = self.hook_neurons(post)
                h = h + blk.hook_mlp_out(blk.mlp[2](post))
        return self.ln_final(h) @ self.W_U

    def ov_circuits(self) -> Tensor:
        """[L, H, V, V]: entry [l, h, s, t] = logit of t added when head (l, h) attends to token s.

        With LayerNorm the path is taken for the token alone: the block's LayerNorm applied to
        the token embedding, the final one's centring and gain (not its data-dependent scale)."""
        out = []
        unembed = self.W_U
        if isinstance(self.ln_final, nn.LayerNorm):
            gain = self.ln_final.weight[:, None] * self.W_U
            unembed = gain - gain.mean(0, keepdim=True)  # centring: (I - 11^T/d) then gain
        for blk in self.blocks:
            at = blk.attn
            H, dh = at.n_heads, at.d_head
            v = torch.einsum("sd,hed->hse", blk.ln(self.W_E), at.W_V)           # [H, V, dh]
            o = at.W_O.reshape(-1, H, dh).permute(1, 2, 0)                       # [H, dh, d]
            out.append(v @ o @ unembed)                                          # [H, V, V]
        return torch.stack(out)

    def embedding_tables(self) -> dict[str, Tensor]:
        return {"embed": self.W_E}

    def unembedding_table(self) -> Tensor:
        return self.W_U.T

    def components(self) -> dict[str, tuple[nn.Module, Optional[int]]]:
        out: dict[str, tuple[nn.Module, Optional[int]]] = {}
        for i, blk in enumerate(self.blocks):
            for h in range(blk.attn.n_heads):
                out[f"blocks.{i}.attn.head{h}"] = (blk.attn.hook_z, h)
            if blk.mlp is not None:
                out[f"blocks.{i}.mlp"] = (blk.hook_mlp_out, None)
        return out

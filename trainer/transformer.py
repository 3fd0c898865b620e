"""Transformers for the algorithmic tasks: Nanda's 1-layer and Power's 2-layer model.

Inputs are ``x: LongTensor [B, seq_len]``; each model appends its own "=" token (id
``vocab_size``) and reads the logits at that last position. Only the last position feeds
the output, so by default only what it needs is computed (exact, see ``compute``):

- ``Transformer1(compute="vocab")`` (default): the last position always holds "=", so its
  query is one vector; attention scores and values depend only on (token, position), so
  they are computed once per step for the vocabulary and gathered per example (autograd
  differentiates through the gathers). Per-example work: W_O, the MLP and the unembedding.
- ``compute="last"``: per-example keys/values, everything else at the last position.
- ``compute="all"``: the reference computation at every position (what a textbook
  transformer does); logits are taken at the last position.

Hook points (``nn.Identity``) and shapes are in the class docstrings.

Example:
    >>> m = Transformer1(vocab_size=7, seq_len=2, n_classes=7, d_model=16, n_heads=2, d_mlp=32)
    >>> m(torch.tensor([[1, 2], [3, 4]])).shape
    torch.Size([2, 7])
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

__all__ = ["Transformer1", "Transformer2", "Attention", "nanda_init_"]
_MODES = ("vocab", "last", "all")
INITS = ("default", "nanda")


class Attention(nn.Module):
    """Multi-head attention weights (no biases) and its hook points.

    ``hook_pattern``: [B, n_heads, q_pos, k_pos]; ``hook_z``: [B, n_heads, d_head] at the
    output position (or [B, n_heads, pos, d_head] where all positions are needed).
    ``hook_pattern`` is for observation (its return value is not used); ``hook_z``,
    ``hook_mlp_out`` and ``hook_neurons`` may replace their tensor (ablation).
    """

    def __init__(self, d_model: int, n_heads: int, d_head: int, std: Optional[float] = None):
        super().__init__()
        self.n_heads, self.d_head = n_heads, d_head
        shape = (n_heads, d_head, d_model)
        init = (lambda *s: torch.randn(*s) * std) if std else (
            lambda *s: (torch.rand(*s) * 2 - 1) / math.sqrt(s[-1]))
        self.W_Q, self.W_K, self.W_V = (nn.Parameter(init(*shape)) for _ in range(3))
        self.W_O = nn.Parameter(init(d_model, n_heads * d_head))  # [d_model, H*d_head]
        self.hook_pattern = nn.Identity()
        self.hook_z = nn.Identity()

    def qkv(self, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """[B, T, d_model] -> three [B, H, T, d_head] with one fused matmul."""
        B, T, _ = h.shape
        w = torch.cat([self.W_Q, self.W_K, self.W_V]).reshape(-1, h.shape[-1])
        out = (h @ w.T).reshape(B, T, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        return out[0], out[1], out[2]

    def attend(self, q: Tensor, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Causal attention of the last ``q.shape[2]`` positions; returns (pattern, z)."""
        Tq, Tk = q.shape[2], k.shape[2]
        if Tk <= 8:  # tiny sequences: broadcasting beats many tiny batched matmuls on CPU
            scores = (q[:, :, :, None] * k[:, :, None]).sum(-1) / math.sqrt(self.d_head)
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(self.d_head)  # [B, H, Tq, Tk]
        if Tq > 1:
            mask = torch.ones(Tq, Tk, dtype=torch.bool, device=q.device).triu(Tk - Tq + 1)
            scores = scores.masked_fill(mask, float("-inf"))
        pattern = scores.softmax(-1)
        z = (pattern[..., None] * v[:, :, None]).sum(3) if Tk <= 8 else pattern @ v
        return pattern, z  # z [B, H, Tq, d_head]

    def out(self, z: Tensor) -> Tensor:
        """[..., H, d_head] -> [..., d_model]"""
        return z.flatten(-2) @ self.W_O.T


class Block1(nn.Module):
    """Attention + ReLU MLP (Nanda's block without LayerNorm); ``hook_mlp_out`` [B, d_model]."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_mlp: int):
        super().__init__()
        std = 1 / math.sqrt(d_model)
        self.attn = Attention(d_model, n_heads, d_head, std=std)
        self.W_in = nn.Parameter(torch.randn(d_mlp, d_model) * std)
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        self.W_out = nn.Parameter(torch.randn(d_model, d_mlp) / math.sqrt(d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_mlp_out = nn.Identity()


class Transformer1(nn.Module):
    """Nanda et al. 2023 one-layer transformer: tokens [a, b, =], learned positions, no
    LayerNorm, ReLU MLP, unembedding at the last position; init normal / sqrt(d).

    ``init="nanda"`` redraws every weight as the paper's code does (``nanda_init_``); the
    default init has the same distributions but draws them in a different order and shape.

    Hooks: ``hook_neurons`` [B, d_mlp]; ``blocks[0].attn.hook_pattern`` [B, H, 1, seq_len+1];
    ``blocks[0].attn.hook_z`` [B, H, d_head]; ``blocks[0].hook_mlp_out`` [B, d_model]
    (all at the last position, in every ``compute`` mode).
    """

    def __init__(self, vocab_size: int, seq_len: int = 2, n_classes: Optional[int] = None,
                 d_model: int = 128, n_heads: int = 4, d_head: Optional[int] = None,
                 d_mlp: int = 512, compute: str = "vocab", init: str = "default"):
        super().__init__()
        if compute not in _MODES:
            raise ValueError(f"compute={compute!r} must be one of {_MODES}")
        if init not in INITS:
            raise ValueError(f"init={init!r} must be one of {INITS}")
        rng_state = torch.get_rng_state()
        n_classes = n_classes or vocab_size
        d_head = d_head or d_model // n_heads
        self.vocab_size, self.seq_len, self.n_classes, self.compute = (
            vocab_size, seq_len, n_classes, compute)
        std = 1 / math.sqrt(d_model)
        self.W_E = nn.Parameter(torch.randn(vocab_size + 1, d_model) * std)  # row vocab = "="
        self.W_pos = nn.Parameter(torch.randn(seq_len + 1, d_model) * std)
        self.blocks = nn.ModuleList([Block1(d_model, n_heads, d_head, d_mlp)])
        self.W_U = nn.Parameter(torch.randn(d_model, n_classes) / math.sqrt(vocab_size + 1))
        self.hook_neurons = nn.Identity()
        if init == "nanda":  # from the random state the paper's constructor would start at
            torch.set_rng_state(rng_state)
            nanda_init_(self)

    def embedding_tables(self) -> dict[str, Tensor]:
        return {"embed": self.W_E[: self.vocab_size]}

    def neuron_input_weights(self) -> Tensor:
        """[1, vocab, d_mlp]: token t at an operand position adds row t, times its attention
        weight, to the MLP pre-activation at "=" (path W_E -> W_V -> W_O -> W_in, all heads).

        Exact when the attention pattern is the same for every head and token; otherwise an
        approximation taking it uniform over heads (a common weight only scales each neuron's
        row, which IPR ignores). One operand: the path is the same at every position (the
        positional embedding adds a token-independent constant).
        """
        at, blk = self.blocks[0].attn, self.blocks[0]
        ov = at.W_O @ at.W_V.reshape(-1, at.W_V.shape[-1])  # [d_model, d_model], heads summed
        return (self.W_E[: self.vocab_size] @ ov.T @ blk.W_in.T)[None]

    def unembedding_table(self) -> Tensor:
        return self.W_U.T

    def components(self) -> dict[str, tuple[nn.Module, Optional[int]]]:
        return _components(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        """[B, seq_len] -> logits [B, n_classes] at the "=" position."""
        if self.compute == "vocab":
            return self._forward_vocab(x)
        if self.compute == "last":
            return self._forward_last(x)
        return self.forward_all_positions(x)

    def _embed(self, x: Tensor) -> Tensor:  # [B, T+1, d] including "="
        eq = torch.full_like(x[:, :1], self.vocab_size)
        return self.W_E[torch.cat([x, eq], 1)] + self.W_pos

    def _mlp_unembed(self, resid: Tensor) -> Tensor:
        blk = self.blocks[0]
        post = self.hook_neurons(torch.relu(resid @ blk.W_in.T + blk.b_in))
        return (resid + blk.hook_mlp_out(post @ blk.W_out.T + blk.b_out)) @ self.W_U

    def _forward_vocab(self, x: Tensor) -> Tensor:
        B, L = x.shape
        at = self.blocks[0].attn
        H, dh = at.n_heads, at.d_head
        e_eq = self.W_E[self.vocab_size] + self.W_pos[L]  # [d] the "=" residual
        q = torch.einsum("hed,d->he", at.W_Q, e_eq)  # one query per head
        u = torch.einsum("he,hed->hd", q, at.W_K) / math.sqrt(dh)  # score = e . u_h
        tab = torch.cat([self.W_E[: self.vocab_size], self.W_pos, e_eq[None]])  # [V+L+2, d]
        s_tab = tab @ u.T  # [V+L+2, H] scores of tokens, positions, "="
        v_tab = (tab @ at.W_V.reshape(H * dh, -1).T).reshape(-1, H, dh)  # values, same rows
        V = self.vocab_size
        pos_rows = torch.arange(V, V + L, device=x.device)
        scores = torch.cat([s_tab[x] + s_tab[pos_rows], s_tab[-1:].expand(B, 1, H)], 1)
        pattern = scores.softmax(1).transpose(1, 2)  # [B, H, L+1]
        at.hook_pattern(pattern[:, :, None, :])
        vals = torch.cat([v_tab[x] + v_tab[pos_rows], v_tab[-1:].expand(B, 1, H, dh)], 1)
        z = at.hook_z((pattern.transpose(1, 2)[..., None] * vals).sum(1))  # [B, H, dh]
        return self._mlp_unembed(e_eq + at.out(z))

    def _forward_last(self, x: Tensor) -> Tensor:
        at = self.blocks[0].attn
        h = self._embed(x)
        _, k, v = at.qkv(h)
        q = (h[:, -1] @ at.W_Q.reshape(-1, h.shape[-1]).T).reshape(len(x), at.n_heads, 1, -1)
        pattern, z = at.attend(q, k, v)
        at.hook_pattern(pattern)
        z = at.hook_z(z[:, :, 0])
        return self._mlp_unembed(h[:, -1] + at.out(z))

    def forward_all_positions(self, x: Tensor) -> Tensor:
        """Reference: attention, MLP and unembedding at every position (textbook model);
        hooks see (and may replace) the last-position slices. Returns [B, n_classes]."""
        blk = self.blocks[0]
        at = blk.attn
        h = self._embed(x)
        pattern, z = at.attend(*at.qkv(h))  # [B, H, T, T], [B, H, T, dh]
        if _hooked(at.hook_pattern):
            at.hook_pattern(pattern[:, :, -1:])
        z = _splice_last(at.hook_z, z, 2)
        h = h + at.out(z.transpose(1, 2))
        post = _splice_last(self.hook_neurons, torch.relu(h @ blk.W_in.T + blk.b_in), 1)
        mlp = _splice_last(blk.hook_mlp_out, post @ blk.W_out.T + blk.b_out, 1)
        return ((h + mlp) @ self.W_U)[:, -1]


@torch.no_grad()
def nanda_init_(m: Transformer1) -> None:
    """Redraw ``m``'s weights as Nanda et al.'s ``transformers.py`` (progress-measures-paper):
    same shapes, order and scales, from torch's current random state.

    d_vocab = vocab_size + 1 (the "=" token). Drawn in order: W_E (d_model, d_vocab) / sqrt(d);
    W_pos (n_ctx, d) / sqrt(d); W_K, W_Q, W_V (heads, d_head, d) / sqrt(d); W_O (d, heads *
    d_head) / sqrt(d); W_in (d_mlp, d) / sqrt(d); W_out (d, d_mlp) / sqrt(d); W_U (d, d_vocab)
    / sqrt(d_vocab). Biases are zero. The paper's W_U also scores the "=" class; its first
    ``n_classes`` columns are kept (all of them when ``n_classes`` = vocab_size + 1).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> m = Transformer1(7, d_model=16, n_heads=2, d_mlp=32, init="nanda")
        >>> _ = torch.manual_seed(0)
        >>> w_e = torch.randn(16, 8) / 4
        >>> bool(torch.equal(m.W_E, w_e.T))
        True
    """
    d, d_vocab = m.W_E.shape[1], m.vocab_size + 1
    blk = m.blocks[0]
    at = blk.attn
    m.W_E.copy_((torch.randn(d, d_vocab) / math.sqrt(d)).T)
    m.W_pos.copy_(torch.randn(*m.W_pos.shape) / math.sqrt(d))
    for w in (at.W_K, at.W_Q, at.W_V, at.W_O, blk.W_in, blk.W_out):
        w.copy_(torch.randn(*w.shape) / math.sqrt(d))
    blk.b_in.zero_()
    blk.b_out.zero_()
    w_u = torch.randn(d, max(d_vocab, m.n_classes)) / math.sqrt(d_vocab)
    m.W_U.copy_(w_u[:, : m.n_classes])


def _hooked(hook: nn.Module) -> bool:
    return bool(hook._forward_hooks or hook._forward_pre_hooks)


def _splice_last(hook: nn.Module, t: Tensor, dim: int) -> Tensor:
    """Pass the last-position slice of ``t`` (along ``dim``, squeezed) through ``hook`` and
    put the result back; skipped without registered hooks (nn.Identity is a no-op)."""
    if not _hooked(hook):
        return t
    out = hook(t.select(dim, -1)).unsqueeze(dim)
    return torch.cat([t.narrow(dim, 0, t.shape[dim] - 1), out], dim)


def _components(blocks: nn.ModuleList) -> dict[str, tuple[nn.Module, Optional[int]]]:
    out: dict[str, tuple[nn.Module, Optional[int]]] = {}
    for i, blk in enumerate(blocks):
        for h in range(blk.attn.n_heads):
            out[f"blocks.{i}.attn.head{h}"] = (blk.attn.hook_z, h)
        out[f"blocks.{i}.mlp"] = (blk.hook_mlp_out, None)
    return out


def _sinusoid(n_ctx: int, d_model: int) -> Tensor:
    pos = torch.arange(n_ctx, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(1e4) / d_model))
    pe = torch.zeros(n_ctx, d_model)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)[:, : d_model // 2]
    return pe


class Block2(nn.Module):
    """Post-LayerNorm decoder block as in Power et al.'s grok/transformer.py (dropout 0)."""

    def __init__(self, d_model: int, n_heads: int, d_head: int, d_mlp: int):
        super().__init__()
        self.attn = Attention(d_model, n_heads, d_head)
        self.ln_attn = nn.LayerNorm(d_model)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_mlp), nn.ReLU(), nn.Linear(d_mlp, d_model))
        self.ln_ffn = nn.LayerNorm(d_model)
        self.hook_mlp_out = nn.Identity()

    def ffn_neurons(self, h: Tensor, hook: Optional[nn.Module] = None) -> Tensor:
        post = self.ffn[1](self.ffn[0](h))
        if hook is not None:
            post = hook(post)
        return self.hook_mlp_out(self.ffn[2](post))


class Transformer2(nn.Module):
    """Power et al. 2022 two-layer causal transformer: post-LN, sinusoidal positions,
    ReLU FFN, dropout 0. Layer 1 runs at all positions; layer 2 (``compute="last"``,
    default) only at the "=" position (``"all"``: every position, the reference).

    Hooks: block 0 — ``attn.hook_pattern`` [B, H, T, T], ``attn.hook_z`` [B, H, T, d_head],
    ``hook_mlp_out`` [B, T, d_model] (T = seq_len + 1); block 1 — [B, H, 1, T],
    [B, H, d_head], [B, d_model] at the last position; ``hook_neurons`` [B, d_mlp].
    """

    def __init__(self, vocab_size: int, seq_len: int = 2, n_classes: Optional[int] = None,
                 d_model: int = 128, n_heads: int = 4, d_head: Optional[int] = None,
                 d_mlp: int = 512, n_layers: int = 2, compute: str = "last"):
        super().__init__()
        if compute not in ("last", "all"):
            raise ValueError(f"compute={compute!r} must be 'last' or 'all'")
        n_classes = n_classes or vocab_size
        d_head = d_head or d_model // n_heads
        self.vocab_size, self.seq_len, self.n_classes, self.compute = (
            vocab_size, seq_len, n_classes, compute)
        self.embed = nn.Embedding(vocab_size + 1, d_model)
        self.register_buffer("pos", _sinusoid(seq_len + 1, d_model), persistent=False)
        self.blocks = nn.ModuleList([Block2(d_model, n_heads, d_head, d_mlp)
                                     for _ in range(n_layers)])
        self.unembed = nn.Linear(d_model, n_classes)
        self.hook_neurons = nn.Identity()

    def embedding_tables(self) -> dict[str, Tensor]:
        return {"embed": self.embed.weight[: self.vocab_size]}

    def unembedding_table(self) -> Tensor:
        return self.unembed.weight

    def components(self) -> dict[str, tuple[nn.Module, Optional[int]]]:
        return _components(self.blocks)

    def forward(self, x: Tensor) -> Tensor:
        """[B, seq_len] -> logits [B, n_classes] at the "=" position."""
        eq = torch.full_like(x[:, :1], self.vocab_size)
        h = self.embed(torch.cat([x, eq], 1)) + self.pos
        *first, last = self.blocks
        for blk in first:
            at = blk.attn
            pattern, z = at.attend(*at.qkv(h))
            at.hook_pattern(pattern)
            h = blk.ln_attn(h + at.out(at.hook_z(z).transpose(1, 2)))
            h = blk.ln_ffn(h + blk.ffn_neurons(h))
        at = last.attn
        q, k, v = at.qkv(h)
        if self.compute == "last":
            pattern, z = at.attend(q[:, :, -1:], k, v)  # [B, H, 1, T], [B, H, 1, dh]
            at.hook_pattern(pattern)
            h = last.ln_attn(h[:, -1] + at.out(at.hook_z(z[:, :, 0])))
            h = last.ln_ffn(h + last.ffn_neurons(h, self.hook_neurons))
            return self.unembed(h)
        # reference: layer 2 at every position; hooks see the last-position slices
        pattern, z = at.attend(q, k, v)
        if _hooked(at.hook_pattern):
            at.hook_pattern(pattern[:, :, -1:])
        h = last.ln_attn(h + at.out(_splice_last(at.hook_z, z, 2).transpose(1, 2)))
        post = _splice_last(self.hook_neurons, last.ffn[1](last.ffn[0](h)), 1)
        mlp = _splice_last(last.hook_mlp_out, last.ffn[2](post), 1)
        return self.unembed(last.ln_ffn(h + mlp))[:, -1]

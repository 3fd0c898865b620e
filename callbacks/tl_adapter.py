"""TransformerLensAdapter: a TransformerLens model, probe-able by phasewatch's probes.

Works with TransformerLens 4.x ``TransformerBridge`` (e.g. ``boot_native(config)``, or a
Hugging Face model booted through the bridge) and with 2.x / 3.x ``HookedTransformer``: both
expose ``hook_dict`` with the canonical hook names and ``W_E`` / ``W_U``. The adapter maps

- ``blocks.{l}.attn.hook_pattern`` ([batch, heads, q, k]) -> AttentionProbe (found by name) and
  one ablation component per head, ``L{l}.head{h}`` (mean-ablates that head's pattern);
- ``blocks.{l}.hook_mlp_out`` -> ablation component ``L{l}.mlp``;
- ``W_E`` / ``W_U`` -> ``embedding_tables()`` / ``unembedding_table()`` and
  ``blocks.{last}.mlp.hook_post`` at ``position`` -> ``hook_neurons`` (FourierProbe).

``forward(x)`` appends ``suffix`` tokens (e.g. the ``=`` token of ``a b =``) and returns the
logits at ``position`` ([batch, vocab]); FourierProbe feeds ``[a, b]`` pairs.

Example:
    >>> from transformer_lens.model_bridge.sources import boot_native      # doctest: +SKIP
    >>> tl = boot_native(dict(n_layers=1, d_model=32, n_heads=2, d_head=16, d_mlp=64,
    ...                       d_vocab=24, n_ctx=3, act_fn="relu"))         # doctest: +SKIP
    >>> model = TransformerLensAdapter(tl, suffix=[23])                    # doctest: +SKIP
    >>> sorted(model.components())[:2]                                     # doctest: +SKIP
    ['L0.head0', 'L0.head1']
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from ._base import forward_hooks

__all__ = ["TransformerLensAdapter"]


class TransformerLensAdapter(nn.Module):
    """Wrap a TransformerLens model (see the module docstring).

    Args:
        model: a ``TransformerBridge`` or ``HookedTransformer`` (anything with ``hook_dict``,
            ``cfg.n_layers``, ``cfg.n_heads``, ``W_E`` and ``W_U``).
        suffix: token ids appended to every input (None: none).
        position: the sequence position whose logits ``forward`` returns (None: all).
    """

    def __init__(self, model: nn.Module, suffix: Sequence[int] | None = None, position: int | None = -1):
        super().__init__()
        missing = [a for a in ("hook_dict", "cfg", "W_E", "W_U") if not hasattr(model, a)]
        if missing:
            raise ValueError(f"{type(model).__name__} is not a TransformerLens model: it has no "
                             f"{', '.join(missing)}")
        self.model, self.position = model, position
        self.register_buffer("suffix", torch.tensor(list(suffix or []), dtype=torch.long),
                             persistent=False)
        self.hook_neurons = nn.Identity()
        self._hooks = model.hook_dict
        self.n_layers, self.n_heads = int(model.cfg.n_layers), int(model.cfg.n_heads)

    def _at(self, t: Tensor) -> Tensor:
        return t if self.position is None or t.dim() < 3 else t[:, self.position]

    def forward(self, x: Tensor) -> Tensor:
        if self.suffix.numel():
            x = torch.cat([x, self.suffix.to(x.device).expand(len(x), -1)], 1)
        post = self._hooks.get(f"blocks.{self.n_layers - 1}.mlp.hook_post")
        if post is not None and self.hook_neurons._forward_hooks:  # a probe listens
            with forward_hooks([(post, self._show_neurons)]):
                return self._at(self.model(x))
        return self._at(self.model(x))

    def _show_neurons(self, module: nn.Module, inputs, output: Tensor) -> None:
        self.hook_neurons(self._at(output))  # returns None: hook_post's output is unchanged

    def components(self) -> dict[str, tuple[nn.Module, int | None]]:
        """``{name: (hook module, index along dim 1 or None)}`` for AblationProbe."""
        comps: dict[str, tuple[nn.Module, int | None]] = {}
        for layer in range(self.n_layers):
            pattern = self._hooks.get(f"blocks.{layer}.attn.hook_pattern")
            if pattern is not None:
                comps.update({f"L{layer}.head{h}": (pattern, h) for h in range(self.n_heads)})
            mlp = self._hooks.get(f"blocks.{layer}.hook_mlp_out")
            if mlp is not None:
                comps[f"L{layer}.mlp"] = (mlp, None)
        return comps

    def embedding_tables(self) -> dict[str, Tensor]:
        """The token embedding [d_vocab, d_model] (both operands share it)."""
        return {"embed": self.model.W_E}

    def unembedding_table(self) -> Tensor:
        """The unembedding as [d_vocab_out, d_model]."""
        return self.model.W_U.T

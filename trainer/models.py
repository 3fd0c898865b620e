"""Canonical models for the built-in tasks and ``build_model(name, task, **kwargs)``.

Every model maps ``x: LongTensor [B, seq_len]`` to logits ``[B, n_classes]`` (or
``[B, out_len, n_classes]``) and exposes the probe interface of CONTRACTS.md:
``hook_neurons`` (nn.Identity), ``embedding_tables()``, ``unembedding_table()`` and
``components()``. One-hot inputs are implemented as exact column gathers of the first
weight matrix (no one-hot tensors are built).

Example:
    >>> from phasewatch.trainer.tasks import build_task
    >>> task = build_task("x+y", p=11)
    >>> model = build_model("embedding_mlp", task, init_scale=2.0)
    >>> model(task.train_x[:3]).shape
    torch.Size([3, 11])
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from .induction import AttnOnlyTransformer
from .tasks import TaskData
from .transformer import Transformer1, Transformer2

__all__ = ["EmbeddingMLP", "QuadraticMLP", "TokenMLP", "Transformer1", "Transformer2",
           "build_model", "MODEL_NAMES"]


def _position_names(seq_len: int) -> list[str]:
    return ["embed_a", "embed_b"] if seq_len == 2 else [f"embed_{i}" for i in range(seq_len)]


class EmbeddingMLP(nn.Module):
    """Separate embedding per input position (a, b), concatenated, one ReLU hidden layer.

    ``hook_neurons``: hidden layer after ReLU, [B, d_hidden].
    """

    def __init__(self, vocab_size: int, seq_len: int = 2, n_classes: Optional[int] = None,
                 d_embed: int = 32, d_hidden: int = 128):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.n_classes = n_classes or vocab_size
        self.embeds = nn.ModuleList([nn.Embedding(vocab_size, d_embed) for _ in range(seq_len)])
        self.hidden = nn.Linear(seq_len * d_embed, d_hidden)
        self.out = nn.Linear(d_hidden, self.n_classes)
        self.hook_neurons = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = torch.cat([emb(x[:, i]) for i, emb in enumerate(self.embeds)], 1)
        return self.out(self.hook_neurons(torch.relu(self.hidden(h))))

    def embedding_tables(self) -> dict[str, Tensor]:
        return {n: e.weight for n, e in zip(_position_names(self.seq_len), self.embeds)}

    def neuron_input_weights(self) -> Tensor:
        """[seq_len, vocab, d_hidden]: operand i's token t adds row [i, t] to the hidden
        pre-activation (``embeds[i]`` times its block of ``hidden.weight``; bias excluded)."""
        blocks = self.hidden.weight.T.reshape(self.seq_len, -1, self.hidden.out_features)
        return torch.stack([e.weight @ w for e, w in zip(self.embeds, blocks)])

    def unembedding_table(self) -> Tensor:
        return self.out.weight

    def components(self) -> dict[str, tuple[nn.Module, Optional[int]]]:
        return {"mlp": (self.hook_neurons, None)}


class QuadraticMLP(nn.Module):
    """Gromov 2023 / Doshi et al. 2024: one-hot(a) ++ one-hot(b) -> width (no bias) -> x^2
    -> n_classes (no bias). Trained with MSE by the module; returns raw outputs.

    ``hook_neurons``: after the square, [B, width].
    """

    def __init__(self, vocab_size: int, seq_len: int = 2, n_classes: Optional[int] = None,
                 width: int = 500):
        super().__init__()
        self.vocab_size, self.seq_len = vocab_size, seq_len
        self.n_classes = n_classes or vocab_size
        self.W_in = nn.Linear(seq_len * vocab_size, width, bias=False)
        self.W_out = nn.Linear(width, self.n_classes, bias=False)
        self.hook_neurons = nn.Identity()
        self.register_buffer("offsets", torch.arange(seq_len) * vocab_size, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.W_in.weight.T[x + self.offsets].sum(1)  # == W_in @ one-hot concat
        return self.W_out(self.hook_neurons(pre * pre))

    def embedding_tables(self) -> dict[str, Tensor]:
        w, V = self.W_in.weight, self.vocab_size
        return {n: w[:, i * V:(i + 1) * V].T for i, n in enumerate(_position_names(self.seq_len))}

    def neuron_input_weights(self) -> Tensor:
        """[seq_len, vocab, width]: ``W_in``'s columns per operand (Doshi et al.'s weights)."""
        return self.W_in.weight.T.reshape(self.seq_len, self.vocab_size, -1)

    def unembedding_table(self) -> Tensor:
        return self.W_out.weight

    def components(self) -> dict[str, tuple[nn.Module, Optional[int]]]:
        return {"mlp": (self.hook_neurons, None)}


class TokenMLP(nn.Module):
    """Generic token MLP: one-hot tokens (``d_embed=None``) or a shared learned embedding
    of ``d_embed`` per token, concatenated, ReLU hidden layers, ``out_len`` output heads.
    Keyvalue canonical (docs/science.md#memorization, capacity): one-hot 64 -> 64 -> 64 -> 64, 12,480 parameters.

    ``hook_neurons``: last hidden layer after ReLU, [B, hidden[-1]]. Output [B, n_classes]
    (``out_len=None``) or [B, out_len, n_classes].
    """

    def __init__(self, vocab_size: int, seq_len: int, n_classes: int,
                 hidden: Sequence[int] = (128, 128), d_embed: Optional[int] = None,
                 out_len: Optional[int] = None):
        super().__init__()
        if not hidden or any(int(h) < 1 for h in hidden):
            raise ValueError(f"hidden={hidden!r} must be a non-empty list of positive widths")
        self.vocab_size, self.seq_len, self.n_classes = vocab_size, seq_len, n_classes
        self.out_len = out_len
        self.embed = nn.Embedding(vocab_size, d_embed) if d_embed else None
        width_in = seq_len * (d_embed or vocab_size)
        dims = [width_in, *map(int, hidden)]
        self.layers = nn.ModuleList([nn.Linear(i, o) for i, o in zip(dims[:-1], dims[1:])])
        self.out = nn.Linear(dims[-1], n_classes * (out_len or 1))
        self.hook_neurons = nn.Identity()
        self.register_buffer("offsets", torch.arange(seq_len) * vocab_size, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        first = self.layers[0]
        if self.embed is None:  # one-hot: gather the columns of the first layer
            h = first.weight.T[x + self.offsets].sum(1) + first.bias
        else:
            h = first(self.embed(x).flatten(1))
        for layer in self.layers[1:]:
            h = layer(torch.relu(h))
        out = self.out(self.hook_neurons(torch.relu(h)))
        return out if self.out_len is None else out.view(len(x), self.out_len, self.n_classes)

    def embedding_tables(self) -> dict[str, Tensor]:
        if self.embed is not None:
            return {"embed": self.embed.weight}
        w, V = self.layers[0].weight, self.vocab_size
        return {n: w[:, i * V:(i + 1) * V].T for i, n in enumerate(_position_names(self.seq_len))}

    def unembedding_table(self) -> Tensor:
        """[n_classes, d] (or [out_len * n_classes, d], output position major)."""
        return self.out.weight

    def components(self) -> dict[str, tuple[nn.Module, Optional[int]]]:
        return {"mlp": (self.hook_neurons, None)}


_CLASSES = {"embedding_mlp": EmbeddingMLP, "quadratic_mlp": QuadraticMLP,
            "transformer1": Transformer1, "transformer2": Transformer2, "mlp": TokenMLP,
            "attn_only": AttnOnlyTransformer}
MODEL_NAMES: tuple[str, ...] = tuple(_CLASSES)
_SINGLE_OUTPUT = ("embedding_mlp", "quadratic_mlp", "transformer1", "transformer2")


def build_model(name: str, task: TaskData, *, init_scale: float = 1.0,
                **kwargs: Any) -> nn.Module:
    """Build model ``name`` sized for ``task``; ``kwargs`` go to the model class.

    ``init_scale`` (Omnigrok alpha) multiplies every initial parameter. ``vocab_size``,
    ``seq_len``, ``n_classes`` may be given to oversize a model, never to undersize it.
    Defaults per task: ``mlp`` on keyvalue uses one-hot inputs and ``hidden=(64, 64)``.

    Example:
        >>> from phasewatch.trainer.tasks import build_task
        >>> m = build_model("transformer1", build_task("x*y", p=13), d_model=32, d_mlp=64)
        >>> sorted(m.components())[:2]
        ['blocks.0.attn.head0', 'blocks.0.attn.head1']
    """
    if name not in _CLASSES:
        raise ValueError(f"name={name!r} is not a known model; valid: {', '.join(MODEL_NAMES)}")
    if not float(init_scale) > 0:
        raise ValueError(f"init_scale={init_scale} must be > 0")
    need = {"vocab_size": task.vocab_size, "seq_len": task.seq_len, "n_classes": task.n_classes}
    for field, value in need.items():
        given = kwargs.setdefault(field, value)
        if field == "seq_len" and given != value:
            raise ValueError(f"seq_len={given} does not match the task's seq_len={value}")
        if given < value:
            raise ValueError(f"{field}={given} is too small for task {task.name!r} "
                             f"({field}={value})")
    max_token = int(max(task.train_x.max(), task.val_x.max()))
    if max_token >= kwargs["vocab_size"]:
        raise ValueError(f"vocab_size={kwargs['vocab_size']} is too small: task "
                         f"{task.name!r} has token id {max_token}")
    if name in _SINGLE_OUTPUT and task.out_len is not None:
        raise ValueError(f"model {name!r} predicts one token per example; task "
                         f"{task.name!r} has out_len={task.out_len} (use model 'mlp')")
    if name == "quadratic_mlp" and task.modulus is None:
        raise ValueError(f"model 'quadratic_mlp' needs a modular task (task.modulus is None "
                         f"for task {task.name!r})")
    if name in ("transformer1", "transformer2"):
        d_model, n_heads = kwargs.get("d_model", 128), kwargs.get("n_heads", 4)
        if "d_head" not in kwargs and d_model % n_heads:
            raise ValueError(f"n_heads={n_heads} does not divide d_model={d_model}")
    if name == "mlp":
        kwargs.setdefault("out_len", task.out_len)
        if task.name == "keyvalue":
            kwargs.setdefault("hidden", (64, 64))
    model = _CLASSES[name](**kwargs)
    if init_scale != 1.0:
        with torch.no_grad():
            for param in model.parameters():
                param.mul_(float(init_scale))
    return model

"""FourierProbe: Nanda et al. (2023) progress measures for modular-addition models.

Works on any model that takes ``x = [a, b]`` (LongTensor [B, 2], ids 0..p-1) and returns logits
[B, >= p] and exposes ``embedding_tables() -> {name: [p, d]}``, ``unembedding_table() ->
[n_classes, d]`` and an ``nn.Identity`` ``hook_neurons`` ([B, d_mlp]) — all built-in phasewatch
modular models do. The model is evaluated on the full p x p grid, row ``a * p + b``.

Logged (definitions: docs/science.md, "Progress measures"):
- arrays ``circuit/fourier_norm/<table>`` and ``circuit/fourier_norm/unembed``: norm of each of
  the p Fourier components (constant, cos_1, sin_1, ..., cos_(p-1)/2, sin_(p-1)/2) of the table;
- ``circuit/gini`` (mean of ``circuit/gini_embed`` and ``circuit/gini_unembed``; Hurley-Rickard
  Gini of those p component norms, embedding tables averaged);
- neuron-DFT key frequencies: each neuron's share of centered-activation 2-D DFT power on
  frequency k (terms {1, cos_k, sin_k} x {1, cos_k, sin_k}); its frequency is the argmax, kept
  when the share >= ``threshold`` (0.85). Arrays ``circuit/key_freqs`` (uint8 mask of length
  (p+1)//2, index = frequency, index 0 unused), ``circuit/neuron_freq`` (int16 per neuron,
  0 = unexplained) and ``circuit/neuron_share`` (float16); scalars ``circuit/n_key_freqs``,
  ``circuit/share_neurons_explained`` (share of neurons explained; not Nanda's fraction of
  variance explained);
- Doshi et al. inverse participation ratio, only for models with ``neuron_input_weights() ->
  [n_operands, vocab, d_mlp]`` (EmbeddingMLP, QuadraticMLP, Transformer1; not TokenMLP or
  Transformer2): per neuron IPR = sum_i (|F_i| / ||F||_2)^4 over the rFFT bins 0..(p-1)/2 of
  its input weights for tokens 0..p-1, averaged over operands (``neuron_ipr``); high =
  Fourier-sparse (generalizing), low = memorizing. Array ``circuit/neuron_ipr`` (float16,
  NaN for dead neurons), scalar ``circuit/ipr_mean`` (mean over the other neurons);
- restricted / excluded loss (``progress_losses``): logits L [p^2, p]; L_R = sum_{k in K} P_k L
  plus the mean over pairs of (L - sum_k P_k L), cross-entropy on all pairs
  (``restricted_on="all"``) or on the test split (``"test"``, the TransformerLens demo's
  choice); excluded: L - sum_{k in K} P_k L, cross-entropy on the train split. P_k projects
  each class column onto the unit vectors cos(w_k(a+b)), sin(w_k(a+b)) of R^{p^2}. Labels:
  restricted against the true labels, excluded against the labels trained on (they differ
  only for corrupted-label tasks); (a + b) mod p without a task.
  ``circuit/restricted_loss_current_k`` / ``circuit/excluded_loss_current_k``: with the K of
  the same probe step (empty early on: restricted ~ ln p, excluded = the train loss).
  ``circuit/restricted_loss`` / ``circuit/excluded_loss``: Nanda's, one K for every step (the
  final model's, or ``key_freqs``), recomputed at the end of fit from the weight snapshots
  (``circuit/snapshot``); live values until then (meta ``circuit/progress_measures``, see
  ``progress``). Neither is logged where they do not apply (MSE outputs, a task other than
  "x+y"): the meta says why and one warning is emitted.

Cost: one forward over p^2 inputs plus O(d_mlp p^2) for the neuron DFT; p=59, one CPU thread:
~9 ms per call on config A (embedding MLP, d_hidden 128), ~47 ms on Transformer1 (d_mlp 512,
mostly its forward).

Example:
    >>> from phasewatch.callbacks import CircuitCheckpoint, FourierProbe
    >>> cb = CircuitCheckpoint([FourierProbe(p=113)], cadence="every:100")
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import Tensor, nn

from ._base import find_trace_logger, forward_hooks
from .circuit import ProbeContext, ProbeResult
from .progress import (CURRENT_K, LAYOUT_KEY, MAIN, SNAPSHOT, STATUS_KEY, check_key_freqs,
                       final_result, model_layout, not_applicable_reason, pack_weights,
                       stored_snapshots)

__all__ = ["FourierProbe", "fourier_basis", "gini", "key_frequencies", "neuron_ipr",
           "progress_losses"]


@functools.lru_cache(maxsize=16)
def fourier_basis(p: int, dtype=torch.float64) -> Tensor:
    """[p, p] orthonormal rows: constant, then cos_k, sin_k for k = 1..(p-1)/2 (cached; do not
    modify the returned tensor)."""
    x = torch.arange(p, dtype=dtype)
    rows = [torch.ones(p, dtype=dtype)]
    for k in range(1, (p - 1) // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    b = torch.stack(rows)[:p]
    return b / b.norm(dim=1, keepdim=True)


def gini(c: Tensor) -> float:
    """Hurley-Rickard Gini: 1 - 2 sum_k (c_(k)/||c||_1) (N - k + 1/2)/N, c sorted ascending."""
    c = torch.sort(c.abs().flatten().double()).values
    n, s = len(c), c.sum()
    if n == 0 or s == 0:
        return float("nan")
    k = torch.arange(1, n + 1, dtype=torch.float64)
    return float(1 - 2 * ((c / s) * (n - k + 0.5) / n).sum())


@functools.lru_cache(maxsize=16)
def _line_index(p: int) -> Tensor:
    """[2, p*p]: (a + b) mod p and (a - b) mod p for grid row a*p+b (cached)."""
    a = torch.arange(p)
    return torch.stack([(a[:, None] + a[None, :]) % p, (a[:, None] - a[None, :]) % p]).flatten(1)


def key_frequencies(acts: Tensor, p: int, threshold: float = 0.85
                    ) -> tuple[Tensor, Tensor, Tensor]:
    """Neuron-DFT frequencies: ``acts`` [p*p, d] (row a*p+b) -> (neuron_freq, share, alive).

    ``share`` [d] is each neuron's best share of centered 2-D DFT power on one frequency k
    (real terms {1, cos_k, sin_k} x {1, cos_k, sin_k}), ``neuron_freq`` [d] its argmax k, or 0
    when the share is below ``threshold`` or the neuron is dead (``alive`` [d] False: no
    variance over the grid). By Parseval that block is the power of the DFT bins
    (ka, kb) in {0, k, -k}^2 minus (0, 0). They lie on the lines (k u_a, k u_b) for u in
    {(1, 0), (0, 1), (1, 1), (1, -1)}, where the 2-D DFT is the 1-D DFT over s of the grid
    summed by s = u_a a + u_b b mod p (projection-slice), so four 1-D rFFTs of length p give
    every block: O(d p^2); a full 2-D transform is O(d p^2 log p) and slow for prime p.

    Cost: [3481, 512] float32 (p=59), one CPU thread, medians of 21-31 calls on a shared
    machine: 4-7 ms (the dense [p, p] basis matmuls used before: 20-29 ms; ``torch.fft.rfft2``
    of the grid alone: 23-35 ms); [3481, 128]: 1.1-1.3 ms (before: 2.8-3.3 ms).

    Example:
        >>> a, b = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
        >>> acts = torch.cos(2 * math.pi * 3 * (a + b) / 7).reshape(49, 1)
        >>> key_frequencies(acts, 7)[0]
        tensor([3])
    """
    x = acts.float()
    x = x - x.mean(0)  # float32 line sums keep their precision when the mean dwarfs the spread
    d = x.shape[1]
    rows = x.reshape(p, p, d).sum(1)
    idx = _line_index(p)
    lines = torch.stack([rows, x.reshape(p, p, d).sum(0),  # grid summed by s = a, b,
                         x.new_zeros(p, d).index_add_(0, idx[0], x),  # a + b, a - b
                         x.new_zeros(p, d).index_add_(0, idx[1], x)])
    Y = torch.fft.rfft(lines, dim=1)[:, 1:]  # bins k = 1..(p-1)/2; the mean only moves bin 0
    block = 2 * (Y.real.square() + Y.imag.square()).sum(0).T.double()  # [d, nk]; bins +-k
    total = x.square().sum(0).double() * p ** 2  # Parseval over all bins of the centered grid
    alive = total > 1e-12 * total.max().clamp_min(1e-300)
    share = torch.where(alive[:, None], block / total.clamp_min(1e-300)[:, None],
                        torch.zeros_like(block))
    best, arg = share.max(dim=1)
    freq = torch.where(alive & (best >= threshold), arg + 1, torch.zeros_like(arg))
    return freq, best, alive


def neuron_ipr(weights: Tensor, p: int) -> Tensor:
    """Doshi et al. IPR per neuron from input weights [n_operands, >= p, d] -> [d] float64.

    Per operand: F = rFFT over tokens 0..p-1, every bin 0..(p-1)/2 (Doshi et al.'s code takes
    ``abs(rfft(w))`` whole: the constant bin 0 counts like any frequency), IPR = sum_i
    (|F_i| / ||F||_2)^4, in [1/((p+1)/2), 1]; then the mean over operands. An operand whose
    weights are ~0 (relative to the largest) is left out of the mean; NaN where that holds
    for every operand (dead neuron).

    Example:
        >>> w = torch.cos(2 * math.pi * 2 * torch.arange(7.0) / 7).reshape(1, 7, 1)
        >>> round(float(neuron_ipr(w, 7)), 9)  # one frequency: all weight on one bin
        1.0
    """
    F = torch.fft.rfft(weights[:, :p].double(), dim=1).abs()  # [n, nk + 1, d]
    power = F.square().sum(1)  # [n, d]
    ipr = F.pow(4).sum(1) / power.clamp_min(1e-300).square()
    ipr[power <= 1e-12 * power.max().clamp_min(1e-300)] = float("nan")
    return ipr.nanmean(0)


@functools.lru_cache(maxsize=256)
def _apb_pair(p: int, k: int) -> Tensor:
    """[2, p*p] unit vectors cos(w_k(a+b)), sin(w_k(a+b)) over the grid (row a*p+b), cached."""
    a = torch.arange(p, dtype=torch.float64)
    s = (a[:, None] + a[None, :]).flatten() * (2 * math.pi * k / p)
    v = torch.stack([torch.cos(s), torch.sin(s)])
    return v / v.norm(dim=1, keepdim=True)


def _apb_directions(p: int, freqs) -> Tensor:
    """[2|K|, p*p] unit vectors cos(w_k(a+b)), sin(w_k(a+b)) for k in ``freqs``."""
    vecs = [_apb_pair(p, int(k)) for k in freqs]
    return torch.cat(vecs) if vecs else torch.zeros(0, p * p, dtype=torch.float64)


def progress_losses(logits: Tensor, labels: Tensor, p: int, freqs, restricted_idx: Tensor,
                    excluded_idx: Tensor, excluded_labels: Tensor | None = None
                    ) -> tuple[float, float]:
    """(restricted loss, excluded loss) from grid logits [p*p, p] (docs/science.md, "Progress measures").

    With D the [2|K|, p^2] directions and C = D L, sum_k P_k L = D^T C; only the rows each loss
    reads are formed (one [rows, p] matrix per loss: on CPU, allocating full-grid float64
    intermediates cost more than the arithmetic).
    """
    excluded_labels = labels if excluded_labels is None else excluded_labels
    L = logits.double()
    D = _apb_directions(p, freqs)  # [m, p^2]
    C = D @ L  # [m, p]
    # restricted: sum_k P_k L + mean over all pairs of (L - sum_k P_k L)
    offset = L.mean(dim=0) - D.mean(dim=1) @ C
    restricted = torch.addmm(offset, D[:, restricted_idx].T, C)
    excluded = torch.addmm(L[excluded_idx], D[:, excluded_idx].T, C, alpha=-1)
    ce = nn.functional.cross_entropy
    return (float(ce(restricted, labels[restricted_idx])),
            float(ce(excluded, excluded_labels[excluded_idx])))


class FourierProbe:
    """Fourier progress measures for modular addition (names in the module docstring).

    Args:
        p: modulus; default ``task.modulus``.
        threshold: neuron share needed to count as explained by one frequency (0.85).
        restricted_on: ``"all"`` pairs (default) or the ``"test"`` split.
        train_index: grid positions of the training pairs; default ``task.train_index``.
        losses: compute restricted / excluded losses; None = when they apply (cross-entropy
            model on "x+y" or an unknown task; see ``progress.not_applicable_reason``).
        key_freqs: K for the main restricted / excluded series (integers 1..(p-1)/2); None =
            the final model's key frequencies, found at the end of fit.
        snapshots: keep the parameters at each probe step (``circuit/snapshot``) so the main
            series can be recomputed with one K at the end of fit and offline.
        name: probe name.
    """

    def __init__(self, p: int | None = None, threshold: float = 0.85, restricted_on: str = "all",
                 train_index: Tensor | None = None, losses: bool | None = None,
                 key_freqs: Sequence[int] | None = None, snapshots: bool = True,
                 name: str = "fourier"):
        if p is not None and (not isinstance(p, int) or p < 3 or p % 2 == 0):
            raise ValueError(f"p must be an odd int >= 3, got {p!r}")
        if not 0 < threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
        if restricted_on not in ("all", "test"):
            raise ValueError(f"restricted_on must be 'all' or 'test', got {restricted_on!r}")
        if key_freqs is not None and p is not None:
            key_freqs = check_key_freqs(key_freqs, p)
        self.p, self.threshold, self.restricted_on = p, threshold, restricted_on
        self.train_index, self.losses, self.name = train_index, losses, name
        self.key_freqs, self.snapshots = key_freqs, snapshots
        self.reason: str | None = None  # why the losses do not apply (None: they do)
        self._grid: dict[str, Tensor] = {}
        self._grid_task: Any = None
        self._held: dict[int, np.ndarray] = {}  # snapshots when there is no trace store
        self._last_keys: list[int] = []

    def missing(self, model: nn.Module, task: Any) -> str | None:
        """What ``model`` / ``task`` lack for this probe (None: it can run)."""
        lacks = [f"`{a}`" for a in ("embedding_tables()", "unembedding_table()", "hook_neurons")
                 if not hasattr(model, a.rstrip("()"))]
        if self.p is None and getattr(task, "modulus", None) is None:
            lacks.append("a modulus (FourierProbe(p=...) or a `task` with .modulus)")
        return "; ".join(lacks) or None

    def applicable(self, model: nn.Module, task: Any) -> bool:
        """True for models with the hook points and a known modulus."""
        return self.missing(model, task) is None

    def setup_grid(self, task: Any, loss: str | None = None) -> None:
        """Build the p x p grid, its labels and splits for ``task``; ``loss`` is the training
        loss's name when known ("cross_entropy", "mse")."""
        p = self.p or getattr(task, "modulus", None)
        if p is None:
            raise ValueError("FourierProbe: no modulus; pass p= or use a task with .modulus")
        if self.key_freqs is not None:
            self.key_freqs = check_key_freqs(self.key_freqs, p)
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        labels = (a + b).flatten() % p
        tr = self.train_index if self.train_index is not None else getattr(task, "train_index", None)
        true_labels, fit_labels = labels, labels
        if task is not None and getattr(task, "train_index", None) is not None \
                and getattr(task, "train_y", None) is not None and task.train_y.dim() == 1:
            true_labels = labels.clone()
            if getattr(task, "val_index", None) is not None:
                true_labels[task.val_index] = task.val_y
            tt = getattr(task, "train_true_y", None)
            true_labels[task.train_index] = task.train_y if tt is None else tt
            fit_labels = true_labels.clone()
            fit_labels[task.train_index] = task.train_y
        all_idx = torch.arange(p * p)
        if tr is not None:
            train_mask = torch.zeros(p * p, dtype=torch.bool)
            train_mask[tr] = True
        self.reason = not_applicable_reason(loss, getattr(task, "name", None))
        if self.losses is False:
            self.reason = "turned off (FourierProbe(losses=False))"
        elif self.losses:
            self.reason = None
        test = all_idx[~train_mask] if tr is not None else None
        self._grid = {"p": torch.tensor(p), "x": torch.stack([a.flatten(), b.flatten()], 1),
                      "labels": true_labels, "fit_labels": fit_labels,
                      "restricted": test if self.restricted_on == "test" and test is not None
                      else all_idx,
                      "excluded": all_idx[train_mask] if tr is not None else all_idx}

    @property
    def modulus(self) -> int:
        """p of the grid set up by ``setup_grid``."""
        return int(self._grid["p"])

    def grid_outputs(self, model: nn.Module) -> tuple[Tensor, Tensor]:
        """(logits [p^2, p] on the CPU, neuron activations [p^2, d_mlp]) on the full grid."""
        g, p = self._grid, int(self._grid["p"])
        device = next(model.parameters()).device
        acts: list[Tensor] = []
        with forward_hooks([(model.hook_neurons, lambda m, i, o: acts.append(o.detach()))]):
            logits = model(g["x"].to(device))
        if logits.dim() == 3:
            logits = logits[:, -1]
        return logits[:, :p].cpu(), torch.cat(acts).cpu()

    def losses_with(self, logits: Tensor, freqs: Sequence[int]) -> tuple[float, float]:
        """(restricted, excluded) loss of grid ``logits`` with key frequencies ``freqs``."""
        g = self._grid
        return progress_losses(logits, g["labels"], int(g["p"]), freqs, g["restricted"],
                               g["excluded"], g["fit_labels"])

    def __call__(self, model: nn.Module, ctx: ProbeContext) -> ProbeResult:
        if not self._grid or self._grid_task is not ctx.task:  # cache per task
            self.setup_grid(ctx.task, _training_loss(ctx.pl_module))
            self._grid_task = ctx.task
        p = int(self._grid["p"])
        logits, acts = self.grid_outputs(model)
        res = ProbeResult()
        F = fourier_basis(p)
        ginis = []
        for tname, table in model.embedding_tables().items():
            norms = (F @ table.detach().double().cpu()[:p]).norm(dim=1)
            res.arrays[f"circuit/fourier_norm/{tname}"] = norms.float().numpy()
            ginis.append(gini(norms))
        un = (F @ model.unembedding_table().detach().double().cpu()[:p]).norm(dim=1)
        res.arrays["circuit/fourier_norm/unembed"] = un.float().numpy()
        g_emb, g_un = float(np.mean(ginis)), gini(un)
        res.scalars.update({"circuit/gini_embed": g_emb, "circuit/gini_unembed": g_un,
                            "circuit/gini": (g_emb + g_un) / 2})
        freq, share, _ = key_frequencies(acts, p, self.threshold)
        keys = sorted(set(freq[freq > 0].tolist()))
        self._last_keys = keys
        mask = np.zeros((p + 1) // 2, dtype=np.uint8)
        mask[keys] = 1
        res.arrays.update({"circuit/key_freqs": mask,
                           "circuit/neuron_freq": freq.numpy().astype(np.int16),
                           "circuit/neuron_share": share.numpy().astype(np.float16)})
        res.scalars.update({"circuit/n_key_freqs": float(len(keys)),
                            "circuit/share_neurons_explained": float((freq > 0).double().mean())})
        if hasattr(model, "neuron_input_weights"):
            ipr = neuron_ipr(model.neuron_input_weights().detach().cpu(), p)
            res.arrays["circuit/neuron_ipr"] = ipr.numpy().astype(np.float16)
            res.scalars["circuit/ipr_mean"] = float(ipr.nanmean())
        if self.reason is not None:
            if STATUS_KEY not in ctx.state and self.losses is not False:  # once per run
                ctx.state[STATUS_KEY] = "not_applicable"
                rank_zero_warn(f"phasewatch: no restricted / excluded loss logged: {self.reason}")
            res.meta[STATUS_KEY] = {"status": "not_applicable", "reason": self.reason}
            return res
        # K empty: restricted = class means only (about ln p), excluded = the plain loss
        r, e = self.losses_with(logits, keys)
        res.scalars.update({CURRENT_K[0]: r, CURRENT_K[1]: e})
        if self.key_freqs is not None:  # the user's K: the live values are already that series
            r, e = self.losses_with(logits, self.key_freqs)
        res.scalars.update({MAIN[0]: r, MAIN[1]: e})
        res.meta[STATUS_KEY] = {
            "status": "provisional", "key_freqs": self.key_freqs,
            "k_source": "user" if self.key_freqs is not None else "current_checkpoint",
            **self.settings(), "note": "live values; the end-of-fit recompute (or `phasewatch probe RUN`) "
                    "replaces them with one K for every probe step"}
        if self.snapshots:
            flat, layout = pack_weights(model)
            res.meta[LAYOUT_KEY] = layout
            if find_trace_logger(ctx.trainer) is not None:
                res.arrays[SNAPSHOT] = flat
            else:  # no trace store to keep them: hold them for finish()
                self._held[int(ctx.step)] = flat
        return res

    def finish(self, model: nn.Module, ctx: ProbeContext) -> ProbeResult | None:
        """End of fit: the main series at every snapshot step with one K (the user's, else the
        final model's: ``__call__`` just ran on it); see ``progress.final_result``."""
        if not self._grid or self.reason is not None:
            return None
        steps, snaps = stored_snapshots(ctx.trainer, self._held)
        return final_result(self, model, steps, snaps, model_layout(model), self._last_keys)

    def settings(self) -> dict[str, Any]:
        """What an offline recompute needs to match this probe (kept in the status meta)."""
        return {"threshold": self.threshold, "restricted_on": self.restricted_on}


def _training_loss(pl_module: Any) -> str | None:
    """The module's loss name from its hyperparameters (phasewatch's ``PhaseModule``), else None."""
    hp = getattr(pl_module, "hparams", None)
    return hp.get("loss") if hasattr(hp, "get") else None

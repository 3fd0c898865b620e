"""Nanda et al.'s progress measures with one K for the whole run (docs/science.md#progress-measures-nanda-et-al-2023).

Nanda et al. (2023) take the key frequencies K once, from the final (generalized) model, and
evaluate the restricted and excluded losses of every checkpoint with that K. ``FourierProbe``
therefore keeps a compact weight snapshot at each probe step (array ``circuit/snapshot``: the
model's parameters flattened into one vector; meta ``circuit/snapshot_layout``: their names and
shapes), and at the end of fit (``finish``) or offline (``phasewatch probe RUN``) this module
reloads each snapshot into a copy of the model and recomputes both losses with the final K (or a
K the user gives), written as the main series ``circuit/restricted_loss`` /
``circuit/excluded_loss``. The per-checkpoint-K values stay as ``..._current_k``.

Meta ``circuit/progress_measures`` says which is which: ``status`` "provisional" while training
(the main series then hold the live values), "final" after the recompute, "not_applicable" with
a ``reason`` where the measures do not apply (MSE outputs, a task other than modular addition,
a final model without key frequencies).

Example:
    >>> import torch
    >>> from torch import nn
    >>> m = nn.Linear(2, 3)
    >>> flat, layout = pack_weights(m)
    >>> flat.shape, layout[0]
    ((9,), ['weight', [3, 2]])
    >>> torch.equal(unpack_weights(flat, layout)["bias"], m.bias.detach())
    True
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from phasewatch.analysis.store_read import load_run

from .trace_logger import find_trace_logger

__all__ = ["SNAPSHOT", "LAYOUT_KEY", "STATUS_KEY", "MAIN", "CURRENT_K", "pack_weights",
           "model_layout", "unpack_weights", "stored_snapshots", "check_key_freqs", "not_applicable_reason", "recompute_series"]

SNAPSHOT = "circuit/snapshot"
LAYOUT_KEY = "circuit/snapshot_layout"
STATUS_KEY = "circuit/progress_measures"
MAIN = ("circuit/restricted_loss", "circuit/excluded_loss")
CURRENT_K = ("circuit/restricted_loss_current_k", "circuit/excluded_loss_current_k")


def pack_weights(model: nn.Module) -> tuple[np.ndarray, list[list[Any]]]:
    """(flat vector of every parameter in its own dtype's widest common type, layout
    [[name, shape], ...]). Buffers are left out: the built-in models' buffers are constants."""
    named = [p.detach() for p in model.parameters()]
    dtype = torch.float32
    for p in named:
        dtype = torch.promote_types(dtype, p.dtype)
    flat = torch.cat([p.reshape(-1).to("cpu", dtype) for p in named]) if named \
        else torch.zeros(0)
    return flat.numpy(), model_layout(model)


def model_layout(model: nn.Module) -> list[list[Any]]:
    """[[parameter name, shape], ...] in ``named_parameters`` order (a snapshot's layout)."""
    return [[n, list(p.shape)] for n, p in model.named_parameters()]


def stored_snapshots(trainer: Any, held: dict[int, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, snapshots [n, n_weights]) of this run: from the trace store when the trainer has
    a TraceLogger (also the steps of a resumed run's earlier sessions), else ``held``."""
    lg = find_trace_logger(trainer)
    if lg is None or lg.store is None:
        steps = sorted(held)
        return np.asarray(steps, dtype=np.int64), np.stack([held[s] for s in steps]) if steps \
            else np.zeros((0, 0), np.float32)
    lg.store.flush()
    with load_run(lg.log_dir) as run:
        if SNAPSHOT not in run.array_names():
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        return run.arrays(SNAPSHOT)


def unpack_weights(flat: np.ndarray, layout: Sequence[Sequence[Any]]) -> dict[str, torch.Tensor]:
    """Inverse of ``pack_weights``: {parameter name: tensor}."""
    sizes = [math.prod(shape) for _, shape in layout]
    if sum(sizes) != flat.size:
        raise ValueError(f"snapshot holds {flat.size} numbers, its layout {sum(sizes)}")
    parts = torch.from_numpy(np.ascontiguousarray(flat)).split(sizes)
    return {name: part.reshape(shape) for (name, shape), part in zip(layout, parts)}


def check_key_freqs(freqs: Iterable[Any], p: int) -> list[int]:
    """Sorted unique key frequencies, or ValueError naming the bad value (integers 1..(p-1)/2).

    Example:
        >>> check_key_freqs([14, 35, 14], 113)
        [14, 35]
    """
    out = []
    top = (p - 1) // 2
    for k in freqs:
        if isinstance(k, bool) or not (isinstance(k, (int, np.integer))
                                       or (isinstance(k, float) and k.is_integer())):
            raise ValueError(f"key frequency {k!r} is not an integer; give integers in 1..{top}")
        if not 1 <= int(k) <= top:
            raise ValueError(f"key frequency {int(k)} is out of range 1..{top} for p={p}")
        out.append(int(k))
    if not out:
        raise ValueError(f"no key frequencies given; give integers in 1..{top}")
    return sorted(set(out))


def not_applicable_reason(loss: str | None, task_name: str | None) -> str | None:
    """Why the restricted / excluded losses do not apply to a run, or None when they do."""
    if loss is not None and loss != "cross_entropy":
        return (f"the model is trained with {loss!r} outputs, not cross-entropy logits; a "
                "cross-entropy of its raw outputs is not Nanda et al.'s restricted / excluded loss")
    if task_name not in (None, "x+y"):
        return (f"task {task_name!r} is not modular addition; the losses project the logits on "
                "cos / sin(w_k (a + b)), which only carry addition")
    return None


def recompute_series(probe: Any, model: nn.Module, steps: Sequence[int], snapshots: np.ndarray,
                     layout: Sequence[Sequence[Any]], key_freqs: Sequence[int]
                     ) -> dict[str, tuple[list[int], list[float]]]:
    """``{main name: (steps, values)}``: restricted and excluded loss of each snapshot with one K.

    ``probe`` is a set-up ``FourierProbe`` (its grid and labels); ``model`` is copied, never
    modified; ``snapshots`` [n_steps, n_weights] in ``layout``. As in Nanda et al.'s code, the
    forward pass runs in float32 (the precision the stored weights have and the model trained
    in) and the projections and cross-entropies in float64 (``progress_losses``); for a
    float32 model the logits are those the live probe saw at the same step.
    """
    device = next(model.parameters()).device
    work = copy.deepcopy(model).to(device, torch.float32).eval()
    restricted, excluded = [], []
    with torch.no_grad():
        for flat in snapshots:
            work.load_state_dict(unpack_weights(flat, layout), strict=False)
            logits, _ = probe.grid_outputs(work)
            r, e = probe.losses_with(logits, key_freqs)
            restricted.append(r)
            excluded.append(e)
    steps = [int(s) for s in steps]
    return {MAIN[0]: (steps, restricted), MAIN[1]: (steps, excluded)}


def final_result(probe: Any, model: nn.Module, steps: Sequence[int], snapshots: np.ndarray,
                 layout: Sequence[Sequence[Any]], final_k: Sequence[int]) -> Any:
    """The ``ProbeResult`` that completes a run: main series recomputed with the user's K
    (``probe.key_freqs``) or ``final_k`` and the status meta; with no K at all, the main series
    are dropped and the status says why. None when there is no snapshot to recompute."""
    from .circuit import ProbeResult  # circuit -> fourier -> progress: import at call time

    user_k = probe.key_freqs
    k = list(user_k) if user_k is not None else list(final_k)
    res = ProbeResult()
    if not k:
        res.drop = list(MAIN)
        res.meta[STATUS_KEY] = {
            "status": "not_applicable", "final_model_key_freqs": [], **probe.settings(),
            "reason": "the final model has no key frequencies (no neuron with >= "
                      f"{probe.threshold} of its activation power on one frequency): no Fourier "
                      f"circuit to restrict to; the per-checkpoint-K values stay in "
                      f"{CURRENT_K[0]} / {CURRENT_K[1]}"}
        return res
    if len(steps) == 0:
        return None
    res.series = recompute_series(probe, model, steps, snapshots, layout, k)
    res.meta[STATUS_KEY] = {"status": "final", "key_freqs": k,
                            "k_source": "user" if user_k is not None else "final_model",
                            "final_model_key_freqs": [int(f) for f in final_k],
                            **probe.settings(), "steps": len(steps)}
    return res

"""ExampleTracker: per-example correctness, loss, margin and p(true) on the whole train / val set.

At each due step it evaluates every example (eval mode, ``no_grad``, in chunks) and writes
compact arrays to the trace store, in dataset order:

- ``examples/{split}/correct`` uint8, ``examples/{split}/loss`` float16,
  ``examples/{split}/margin`` float16 (logit of the label minus the largest other logit),
  ``examples/{split}/p_true`` float16 (softmax probability of the label);
- corrupted-label tasks: ``examples/train/corrupted`` uint8 (once, at the first evaluation) and
  ``examples/train/correct_true`` uint8 (correct against the TRUE label, every example, so it
  indexes like ``corrupted``); ``examples/{split}/index`` int64 (once) when the task has one;
- at the end of fit: cartography (Swayamdipta et al. 2020) ``examples/train/confidence`` (mean
  p_true), ``examples/train/variability`` (std, ddof 0), ``examples/train/correctness`` (share
  correct) and Toneva et al. event counts ``examples/train/forgetting`` /
  ``examples/train/learning`` (uint16; 1->0 and 0->1 transitions between evaluations).

Scalars: ``examples/{split}/acc``, ``examples/{split}/loss``, ``examples/train/acc_clean``,
``examples/train/acc_corrupted``, ``examples/train/acc_corrupted_true``,
``examples/{split}/n_learned``, ``examples/{split}/n_forgotten`` (transitions since the previous
evaluation), ``examples/{split}/forgetting_mean`` (events per example so far) and, for corrupted
tasks, ``examples/train/forgetting_mean_clean`` / ``..._corrupted``.

Multi-token outputs ([B, L, C]): correct = every position right, loss = mean over positions,
margin = min over positions, p_true = exp(-mean CE) (geometric mean).

Data: explicit ``train=(x, y)`` / ``val=(x, y)``; else ``pl_module.task`` /
``trainer.datamodule.task`` (phasewatch TaskData fields); else the datasets of the train / val
dataloaders: items that are ``(x, y, ...)`` tuples, dicts (keys ``keys=("x", "y")``) or anything
a user ``batch_to_xy(collated_batch) -> (x, y)`` understands. At most ``max_examples`` examples
per split are tracked: all of them when the set is that small, else a sample drawn with ``seed``
(sorted; positions in ``examples/{split}/sample``, once). Only the tracked items are read and
collated -- the dataset is never materialised; a dataset without a length (iterable) gives its
first ``max_examples`` items. A module without ``forward`` is evaluated through its inner
``model`` when that has one, else pass ``forward=fn(pl_module, x)``. Under DDP every rank evaluates a strided shard and the
results are all-gathered, so the arrays cover the whole dataset; rank 0 writes.
Cost per evaluation (one CPU thread, train and val sets, two forwards and 9 arrays written):
~5 ms on config A (1,740 + 1,741 examples, embedding MLP), ~22 ms on config C (transformer).

Example:
    >>> from phasewatch.callbacks import ExampleTracker
    >>> cb = ExampleTracker(cadence="log:20,max:100", val=True)
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import default_collate

from pytorch_lightning.utilities import rank_zero_warn

from ._base import (CallbackSetupError, PeriodicCallback, eval_mode, find_task, inner_model,
                    log_array, log_scalars)

__all__ = ["ExampleTracker"]

_STATE_KEYS = ("prev", "forget", "learn", "sum_p", "sumsq_p", "sum_c")


def per_example_stats(logits: Tensor, y: Tensor, loss: Tensor | None = None) -> dict[str, Tensor]:
    """Correctness, loss, margin and p(y) per example from ``logits`` [B, C] or [B, L, C]."""
    logits = logits.float()
    if logits.dim() == 2:
        logits, y = logits[:, None], y[:, None]
    logp = torch.log_softmax(logits, -1)
    lp_true = logp.gather(-1, y[..., None]).squeeze(-1)  # [B, L]
    true = logits.gather(-1, y[..., None]).squeeze(-1)
    other = logits.scatter(-1, y[..., None], float("-inf")).amax(-1)
    ce = -lp_true.mean(1)
    return {
        "correct": (logits.argmax(-1) == y).all(1),
        "loss": ce if loss is None else loss.reshape(len(ce), -1).float().mean(1),
        "margin": (true - other).amin(1),
        "p_true": ce.neg().exp(),
    }


def _has_forward(module: nn.Module) -> bool:
    """True when the module's class implements ``forward`` (not nn.Module's / Lightning's stub)."""
    return type(module).forward not in (nn.Module.forward, pl.LightningModule.forward)


def _take_rows(t: Tensor | None, pos: Tensor | None) -> Tensor | None:
    return t if t is None or pos is None else t[pos]


class ExampleTracker(PeriodicCallback):
    """Per-example learning dynamics (names and layout in the module docstring).

    Args:
        cadence: ``"log:20,max:100"`` (default), ``"every:50"``, ...
        train: ``(x, y)`` tensors, or None to resolve from the task / train dataloader.
        val: ``(x, y)``, True (resolve), or False (train only).
        train_true_y, train_corrupted: subset tags when ``train`` is given explicitly.
        forward: ``fn(pl_module, x) -> logits``; default ``pl_module(x)``.
        loss: ``"auto"`` (``pl_module.loss_fn(logits, y, reduction="none")`` if it exists, else
            cross-entropy), ``"cross_entropy"``, or ``fn(logits, y) -> per-example loss``.
        batch_size: evaluation chunk size.
        strict: raise when no training set can be found (True), or warn once and do nothing
            (False; what ``default_callbacks`` uses, so the default set fits any module).
        keys: ``(x key, y key)`` of dict items / batches.
        batch_to_xy: ``fn(collated batch) -> (x, y)`` for any other item layout.
        max_examples: most examples tracked per split (a seeded sample above that).
        seed: seed of that sample.
    """

    def __init__(self, cadence: Any = "log:20,max:100", train: tuple[Tensor, Tensor] | None = None,
                 val: "tuple[Tensor, Tensor] | bool" = True, train_true_y: Tensor | None = None,
                 train_corrupted: Tensor | None = None,
                 forward: Callable[[Any, Tensor], Tensor] | None = None,
                 loss: "str | Callable[[Tensor, Tensor], Tensor]" = "auto", batch_size: int = 8192,
                 strict: bool = True, keys: tuple[str, str] = ("x", "y"),
                 batch_to_xy: Callable[[Any], tuple[Tensor, Tensor]] | None = None,
                 max_examples: int = 10_000, seed: int = 0):
        super().__init__(cadence)
        if not isinstance(max_examples, int) or max_examples < 1:
            raise ValueError(f"max_examples must be a positive int, got {max_examples!r}")
        if len(keys) != 2:
            raise ValueError(f"keys must be (x key, y key), got {keys!r}")
        if batch_to_xy is not None and not callable(batch_to_xy):
            raise ValueError(f"batch_to_xy must be a callable batch -> (x, y), got {batch_to_xy!r}")
        for nm, v in (("train", train), ("val", val)):
            if v is not None and not isinstance(v, bool) and (not isinstance(v, (tuple, list))
                                                               or len(v) != 2):
                raise ValueError(f"{nm} must be an (x, y) pair, got {type(v).__name__}")
        if not (callable(loss) or loss in ("auto", "cross_entropy")):
            raise ValueError(f"loss must be 'auto', 'cross_entropy' or a callable, got {loss!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self._given = {"train": train, "val": val if isinstance(val, (tuple, list)) else None}
        self.val = val is not False
        self._given_tags = (train_true_y, train_corrupted)
        self.forward, self.loss, self.batch_size = forward, loss, batch_size
        self.strict = bool(strict)
        self.keys, self.batch_to_xy = tuple(keys), batch_to_xy
        self.max_examples, self.seed = max_examples, int(seed)
        self.data: dict[str, dict[str, Tensor | None]] = {}
        self._acc: dict[str, dict[str, Tensor]] = {}
        self._n_evals = 0
        self._once_done = False

    # ---- resolution --------------------------------------------------------------------------
    def _resolve(self, trainer, pl_module) -> None:
        task = find_task(trainer, pl_module)
        data: dict[str, dict[str, Tensor | None]] = {}
        for split in ("train", "val") if self.val else ("train",):
            xy = self._given[split]
            if xy is None and task is not None and getattr(task, f"{split}_x", None) is not None:
                xy = (getattr(task, f"{split}_x"), getattr(task, f"{split}_y"))
            pos = None
            if xy is None and (got := self._from_loader(trainer, split)) is not None:
                *xy, pos = got
            elif xy is not None:
                pos = self._sample(len(xy[1]))
                xy = xy if pos is None else (xy[0][pos], xy[1][pos])
            if xy is None:
                if split == "train":
                    raise ValueError("ExampleTracker: cannot find the training set; pass "
                                     "train=(x, y) or give the module a `task`")
                continue
            entry = {"x": xy[0], "y": xy[1], "true_y": None, "corrupted": None, "index": None,
                     "sample": pos}
            if split == "train":
                true_y, corr = self._given_tags
                if self._given["train"] is None and task is not None:
                    true_y = getattr(task, "train_true_y", None)
                    corr = getattr(task, "train_corrupted", None)
                entry["true_y"], entry["corrupted"] = _take_rows(true_y, pos), _take_rows(corr, pos)
            if task is not None and self._given[split] is None:
                entry["index"] = _take_rows(getattr(task, f"{split}_index", None), pos)
            data[split] = entry
        if self.forward is None:
            self._check_forward(pl_module)
        self.data = data

    def _from_loader(self, trainer, split: str):
        try:
            loader = trainer.train_dataloader if split == "train" else trainer.val_dataloaders
        except Exception:  # noqa: BLE001 - no loader attached
            return None
        if isinstance(loader, (list, tuple)):
            loader = loader[0] if loader else None
        ds = getattr(loader, "dataset", None)
        if ds is None:
            return None
        if hasattr(ds, "tensors") and len(ds.tensors) >= 2 and self.batch_to_xy is None:
            pos = self._sample(len(ds.tensors[1]))
            return _take_rows(ds.tensors[0], pos), _take_rows(ds.tensors[1], pos), pos
        collate = getattr(loader, "collate_fn", None) or default_collate
        try:
            n = len(ds)
        except TypeError:  # iterable dataset: its first max_examples items
            items = list(itertools.islice(iter(ds), self.max_examples))
            pos = None
        else:
            pos = self._sample(n)
            items = [ds[int(i)] for i in (range(n) if pos is None else pos)]
        if not items:
            return None
        x, y = self._xy(collate(items))
        return x, y, pos

    def _xy(self, batch) -> tuple[Tensor, Tensor]:
        """``(x, y)`` of a collated batch: ``batch_to_xy``, a dict's ``keys``, or a tuple's first two."""
        if self.batch_to_xy is not None:
            x, y = self.batch_to_xy(batch)
        elif isinstance(batch, dict):
            kx, ky = self.keys
            if kx not in batch or ky not in batch:
                raise ValueError(f"ExampleTracker: dict items have keys {sorted(batch)}, not "
                                 f"{kx!r} / {ky!r}; pass keys=(x_key, y_key) or batch_to_xy=fn")
            x, y = batch[kx], batch[ky]
        elif isinstance(batch, (tuple, list)) and len(batch) >= 2:
            x, y = batch[0], batch[1]
        else:
            raise ValueError(f"ExampleTracker: cannot split a {type(batch).__name__} item into (x, y); "
                             "pass batch_to_xy=fn(batch) -> (x, y)")
        return torch.as_tensor(x), torch.as_tensor(y)

    def _sample(self, n: int) -> Tensor | None:
        """Sorted positions of the tracked examples out of ``n`` (None: all of them)."""
        if n <= self.max_examples:
            return None
        g = torch.Generator().manual_seed(self.seed)
        return torch.randperm(n, generator=g)[:self.max_examples].sort().values

    def _logits(self, pl_module, x: Tensor) -> Tensor:
        """``forward`` as given, else the module's own, else its inner ``model``'s."""
        if self.forward is not None:
            return self.forward(pl_module, x)
        return pl_module(x) if _has_forward(pl_module) else inner_model(pl_module)(x)

    @staticmethod
    def _check_forward(pl_module) -> None:
        if not (_has_forward(pl_module) or _has_forward(inner_model(pl_module))):
            raise ValueError(f"ExampleTracker: {type(pl_module).__name__} has no forward(); pass "
                             "forward=fn(pl_module, x) -> logits")

    def on_train_start(self, trainer, pl_module) -> None:
        try:
            self._resolve(trainer, pl_module)
        except ValueError as err:
            if self.strict:  # on purpose: passes the callbacks' failure boundary
                raise CallbackSetupError(str(err)) from None
            rank_zero_warn(f"{err}; ExampleTracker does nothing in this run")
            self.data = {}
            return
        for split, d in self.data.items():
            n = len(d["y"])
            if split not in self._acc or len(self._acc[split]["prev"]) != n:
                self._acc[split] = {"prev": torch.full((n,), 255, dtype=torch.uint8),
                                    "forget": torch.zeros(n, dtype=torch.int32),
                                    "learn": torch.zeros(n, dtype=torch.int32),
                                    "sum_p": torch.zeros(n, dtype=torch.float64),
                                    "sumsq_p": torch.zeros(n, dtype=torch.float64),
                                    "sum_c": torch.zeros(n, dtype=torch.float64)}
        if self._take(trainer.global_step):
            self._evaluate(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.data and self._take(trainer.global_step):
            self._evaluate(trainer, pl_module)

    # ---- evaluation --------------------------------------------------------------------------
    def _loss(self, pl_module, logits: Tensor, y: Tensor) -> Tensor | None:
        if callable(self.loss):
            return self.loss(logits, y)
        if self.loss == "auto" and callable(getattr(pl_module, "loss_fn", None)):
            return pl_module.loss_fn(logits, y, reduction="none")
        return None

    def _shard_stats(self, trainer, pl_module, d) -> Tensor:
        """[N, 5] float: correct, loss, margin, p_true, correct_true — for the whole set."""
        world, rank = trainer.world_size, trainer.global_rank
        n = len(d["y"])
        n_per = -(-n // world)
        idx = torch.arange(rank, n_per * world, world).clamp_max(n - 1)
        device = pl_module.device
        rows = []
        with eval_mode(pl_module):
            for lo in range(0, len(idx), self.batch_size):
                sel = idx[lo:lo + self.batch_size]
                x, y = d["x"][sel].to(device), d["y"][sel].to(device)
                logits = self._logits(pl_module, x)
                s = per_example_stats(logits, y, self._loss(pl_module, logits, y))
                if d["true_y"] is not None:
                    tru = d["true_y"][sel].to(device)
                    t = (logits.argmax(-1) == tru)
                    ct = t if t.dim() == 1 else t.all(1)
                else:
                    ct = s["correct"]
                rows.append(torch.stack([s["correct"].float(), s["loss"].float(), s["margin"],
                                         s["p_true"], ct.float()], 1))
        local = torch.cat(rows) if rows else torch.zeros(0, 5, device=device)
        if world == 1:
            return local.cpu()
        gathered = trainer.strategy.all_gather(local)  # [world, n_per, 5], on every rank
        return gathered.transpose(0, 1).reshape(-1, 5)[:n].cpu()

    def _evaluate(self, trainer, pl_module) -> None:
        scalars: dict[str, float] = {}
        first = not self._once_done
        for split, d in self.data.items():
            st = self._shard_stats(trainer, pl_module, d)
            correct = st[:, 0] > 0.5
            pre = f"examples/{split}"
            log_array(trainer, f"{pre}/correct", correct.numpy().astype(np.uint8))
            log_array(trainer, f"{pre}/loss", st[:, 1].numpy().astype(np.float16))
            log_array(trainer, f"{pre}/margin", st[:, 2].numpy().astype(np.float16))
            log_array(trainer, f"{pre}/p_true", st[:, 3].numpy().astype(np.float16))
            scalars[f"{pre}/acc"] = float(correct.float().mean())
            scalars[f"{pre}/loss"] = float(st[:, 1].double().mean())
            corr = d["corrupted"]
            if corr is not None:
                corr = corr.bool().cpu()
                log_array(trainer, f"{pre}/correct_true", (st[:, 4] > 0.5).numpy().astype(np.uint8))
                if first:
                    log_array(trainer, f"{pre}/corrupted", corr.numpy().astype(np.uint8))
                if (~corr).any():
                    scalars[f"{pre}/acc_clean"] = float(correct[~corr].float().mean())
                if corr.any():
                    scalars[f"{pre}/acc_corrupted"] = float(correct[corr].float().mean())
                    scalars[f"{pre}/acc_corrupted_true"] = float((st[corr, 4] > 0.5).float().mean())
            for key in ("index", "sample"):
                if first and d[key] is not None:
                    log_array(trainer, f"{pre}/{key}", d[key].cpu().numpy().astype(np.int64))
            scalars.update(self._update_events(split, correct, st[:, 3].double(), corr))
        self._once_done = True
        self._n_evals += 1
        log_scalars(trainer, scalars)

    def _update_events(self, split: str, correct: Tensor, p_true: Tensor, corr) -> dict[str, float]:
        a = self._acc[split]
        cur = correct.to(torch.uint8)
        seen = a["prev"] != 255
        forgot = seen & (a["prev"] == 1) & (cur == 0)
        learned = seen & (a["prev"] == 0) & (cur == 1)
        a["forget"] += forgot.int()
        a["learn"] += learned.int()
        a["prev"] = cur
        a["sum_p"] += p_true
        a["sumsq_p"] += p_true.square()
        a["sum_c"] += correct.double()
        pre = f"examples/{split}"
        out = {f"{pre}/n_learned": float(learned.sum()), f"{pre}/n_forgotten": float(forgot.sum()),
               f"{pre}/forgetting_mean": float(a["forget"].double().mean())}
        if corr is not None and corr.any() and (~corr).any():
            out[f"{pre}/forgetting_mean_clean"] = float(a["forget"][~corr].double().mean())
            out[f"{pre}/forgetting_mean_corrupted"] = float(a["forget"][corr].double().mean())
        return out

    def cartography(self, split: str = "train") -> dict[str, np.ndarray]:
        """Confidence, variability, correctness and event counts per example so far."""
        a, n = self._acc[split], max(self._n_evals, 1)
        mean = a["sum_p"] / n
        var = (a["sumsq_p"] / n - mean.square()).clamp_min(0)
        return {"confidence": mean.float().numpy(), "variability": var.sqrt().float().numpy(),
                "correctness": (a["sum_c"] / n).float().numpy(),
                "forgetting": a["forget"].numpy().astype(np.uint16),
                "learning": a["learn"].numpy().astype(np.uint16)}

    def on_train_end(self, trainer, pl_module) -> None:
        if self._n_evals == 0:
            return
        for split in self._acc:
            for name, arr in self.cartography(split).items():
                log_array(trainer, f"examples/{split}/{name}", arr)

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state.update(n_evals=self._n_evals, once_done=self._once_done,
                     acc={s: {k: v.clone() for k, v in a.items()} for s, a in self._acc.items()})
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._n_evals = int(state_dict.get("n_evals", 0))
        self._once_done = bool(state_dict.get("once_done", False))
        self._acc = {s: {k: v.clone() for k, v in a.items()}
                     for s, a in state_dict.get("acc", {}).items()}

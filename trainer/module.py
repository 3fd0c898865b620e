"""The LightningModule that trains the built-in models on the built-in tasks.

It evaluates the *full* training and validation sets on a step cadence (Lightning's
validation loop, ``val_check_interval``) and logs ``train/loss``, ``train/acc``,
``val/loss``, ``val/acc`` there; for corrupted labels also ``train/acc_clean``,
``train/acc_corrupted`` and ``train/acc_corrupted_true`` (the corrupted subset scored
against its true labels). Probes reach the network as ``module.model`` and the data as
``module.task``.

Example:
    >>> from phasewatch.trainer.data import TaskDataModule
    >>> dm = TaskDataModule(task="x+y", p=59, frac=0.5)
    >>> module = PhaseModule(dm.task, model="embedding_mlp", lr=3e-3)
    >>> # pl.Trainer(max_steps=3000, val_check_interval=20,
    >>> #            check_val_every_n_epoch=None).fit(module, dm)
"""

from __future__ import annotations

import copy
import gc
import warnings
from typing import Optional

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from phasewatch.callbacks.trace_logger import log_scalars, set_meta

from .grokfast import GradFilter
from .models import build_model
from .tasks import TaskData

LOSSES = ("cross_entropy", "mse")


def exact_match(predictions: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1.0 where every output position of an example is right, else 0.0."""
    hit = predictions == y
    return (hit.all(-1) if hit.dim() > 1 else hit).float()


class PhaseModule(pl.LightningModule):
    """Full-batch (or minibatch) training with AdamW and linear warmup.

    Args:
        task: the data (``TaskDataModule(...).task``); linked automatically by the CLI.
        model: ``"embedding_mlp"``, ``"quadratic_mlp"``, ``"transformer1"``,
            ``"transformer2"`` or ``"mlp"``.
        model_kwargs: extra constructor arguments of the model (widths, d_model ...).
        lr, weight_decay, betas, warmup_steps: AdamW with linear warmup over the first
            ``warmup_steps`` steps (Nanda et al.: 1e-3, 1.0, (0.9, 0.98), 10).
        loss: ``"cross_entropy"`` or ``"mse"`` (against one-hot targets, Gromov/Doshi).
        loss_float64: compute the loss in float64 (removes float32 loss spikes near zero).
        grokfast: ``None``, ``"ema"`` or ``"ma"`` gradient filter (Lee et al. 2024).
        init_scale: multiply the initial weights by this (Omnigrok's alpha).
        eval_batch_size: evaluate in chunks of this many examples (``None``: all at once).
        lean_step: take the optimizer step inside ``training_step`` (Lightning's manual
            optimization: the same zero_grad / backward / step / schedule, the same callback
            hooks) instead of through Lightning's automatic-optimization closure (cProfile,
            config A: ~175 of ~1,830 Python calls per step fewer). Falls back to automatic
            optimization when the trainer clips gradients or accumulates batches (which need
            it). Hooks that differ: none (``on_before_zero_grad`` is called here for callbacks
            and the module, as Lightning does).
    """

    def __init__(self, task: TaskData, model: str = "embedding_mlp",
                 model_kwargs: Optional[dict] = None, lr: float = 1e-3,
                 weight_decay: float = 1.0, betas: tuple[float, float] = (0.9, 0.98),
                 warmup_steps: int = 10, loss: str = "cross_entropy", loss_float64: bool = False,
                 grokfast: Optional[str] = None, grokfast_alpha: float = 0.98,
                 grokfast_lambda: float = 2.0, grokfast_window: int = 100,
                 init_scale: float = 1.0, eval_batch_size: Optional[int] = None,
                 lean_step: bool = True) -> None:
        super().__init__()
        if loss not in LOSSES:
            raise ValueError(f"model.loss must be one of {LOSSES}, got {loss!r}")
        if lr <= 0:
            raise ValueError(f"model.lr must be positive, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"model.weight_decay must be >= 0, got {weight_decay}")
        if warmup_steps < 0:
            raise ValueError(f"model.warmup_steps must be >= 0, got {warmup_steps}")
        if eval_batch_size is not None and eval_batch_size < 1:
            raise ValueError(f"model.eval_batch_size must be >= 1 or null, got {eval_batch_size}")
        self.save_hyperparameters(ignore=["task"])
        self.task = task
        self.model = build_model(model, task, init_scale=init_scale, **(model_kwargs or {}))
        self.grad_filter = (GradFilter(grokfast, grokfast_alpha, grokfast_lambda, grokfast_window)
                            if grokfast else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def loss_fn(self, logits: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Loss per example (``reduction="none"``) or its mean; multi-token outputs average positions."""
        if self.hparams.loss_float64:
            logits = logits.double()
        if self.hparams.loss == "mse":
            target = F.one_hot(y, logits.shape[-1]).to(logits.dtype)
            per_example = ((logits - target) ** 2).sum(-1)
        else:
            per_example = F.cross_entropy(logits.flatten(0, -2), y.flatten(), reduction="none")
            per_example = per_example.view(y.shape)
        if per_example.dim() > 1:
            per_example = per_example.mean(-1)
        return per_example.mean() if reduction == "mean" else per_example

    def __setattr__(self, name: str, value: object) -> None:
        # Lightning sets _current_fx_name before and after every hook, ~50 times a step;
        # nn.Module.__setattr__'s parameter / buffer / submodule checks made that ~3 % of
        # config A's step. A plain string attribute needs none of them.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def automatic_optimization(self) -> bool:
        """False (the lean step) unless ``lean_step`` is off or the trainer clips / accumulates."""
        trainer = self._trainer
        if not self.hparams.get("lean_step") or trainer is None or not self._automatic_optimization:
            return self._automatic_optimization
        return bool(trainer.gradient_clip_val) or trainer.accumulate_grad_batches != 1

    @automatic_optimization.setter
    def automatic_optimization(self, value: bool) -> None:
        self._automatic_optimization = value

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        x, y, _ = batch
        loss = self.loss_fn(self.model(x), y)
        if not self.automatic_optimization:
            self._lean_step(loss, batch_idx)
        return loss

    def _lean_step(self, loss: torch.Tensor, batch_idx: int) -> None:
        """What Lightning's automatic optimization does for one optimizer, in its order:
        on_before_zero_grad hooks, zero_grad, backward (with its hooks), step (with
        on_before_optimizer_step), then the per-step LR schedule."""
        trainer, optimizer = self.trainer, self.optimizers()
        for callback in trainer.callbacks:
            hook = getattr(callback, "on_before_zero_grad", None)
            if callable(hook):  # LeanCallback leaves None where it has nothing to do
                hook(trainer, self, optimizer)
        self.on_before_zero_grad(optimizer)
        self.optimizer_zero_grad(trainer.current_epoch, batch_idx, optimizer)
        self.manual_backward(loss)
        optimizer.step()
        schedule = self.lr_schedulers()
        if schedule is not None:
            schedule.step()

    def on_after_backward(self) -> None:
        if self.grad_filter is not None:
            self.grad_filter.apply(self.model.named_parameters())

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-example loss, correctness (all output positions right) and predictions on a whole set."""
        chunk = self.hparams.eval_batch_size or max(len(x), 1)
        losses, predictions = [], []
        for start in range(0, len(x), chunk):
            xb, yb = x[start:start + chunk].to(self.device), y[start:start + chunk].to(self.device)
            logits = self.model(xb)
            losses.append(self.loss_fn(logits, yb, reduction="none").float())
            predictions.append(logits.argmax(-1))
        predictions = torch.cat(predictions)
        return torch.cat(losses), exact_match(predictions, y.to(self.device)), predictions

    def validation_step(self, batch: object, batch_idx: int) -> None:
        task = self.task
        loss, correct, predictions = self.evaluate(task.train_x, task.train_y)
        metrics = {"train/loss": loss.mean(), "train/acc": correct.mean()}
        if task.train_corrupted is not None:
            corrupted = task.train_corrupted.to(self.device)
            metrics["train/acc_clean"] = correct[~corrupted].mean()
            metrics["train/acc_corrupted"] = correct[corrupted].mean()
            true_y = task.train_true_y.to(self.device)
            metrics["train/acc_corrupted_true"] = exact_match(predictions[corrupted], true_y[corrupted]).mean()
        if len(task.val_x):
            val_loss, val_correct, _ = self.evaluate(task.val_x, task.val_y)
            metrics.update({"val/loss": val_loss.mean(), "val/acc": val_correct.mean()})
        # Not ``self.log``: it would reach the loggers at ``global_step - 1`` (Lightning's
        # in-epoch validation convention; phasewatch's one step axis is ``trainer.global_step``),
        # and its reduction machinery cost ~5 ms per evaluation, more than the evaluation itself
        # on config A. Callbacks (EarlyStopping, ModelCheckpoint) still see the values.
        self.trainer.callback_metrics.update({k: v.detach() for k, v in metrics.items()})
        log_scalars(self.trainer, metrics)

    def configure_optimizers(self) -> dict:
        hp = self.hparams
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=hp.lr,
                                      weight_decay=hp.weight_decay, betas=tuple(hp.betas))
        warmup = max(hp.warmup_steps, 1)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def setup(self, stage: str) -> None:
        # Weight decay drives weights towards zero; denormal floats there slow CPUs many-fold.
        torch.set_flush_denormal(True)
        if self._trainer is not None:  # what the analyzer needs to score memorized bits / the model
            for key, value in self.run_meta().items():
                set_meta(self.trainer, key, value)

    def on_train_start(self) -> None:
        # Everything alive now (torch, Lightning, the data, the model: ~400,000 objects) lives
        # through training; freezing it keeps the cyclic collector's full collections, each a
        # scan of all of them (~0.2 s, 4 per 1,000 steps of config A), out of the training loop.
        # Unfrozen at teardown (also after an error) unless someone else had frozen objects.
        self._froze_gc = gc.get_freeze_count() == 0
        if self._froze_gc:
            gc.freeze()
        if not self.automatic_optimization:
            # ModelCheckpoint warns (15 lines) that a manual-optimization checkpoint holds the
            # weights after the step: so does automatic optimization's, which the lean step mirrors
            warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")

    def teardown(self, stage: str) -> None:
        if getattr(self, "_froze_gc", False):
            gc.unfreeze()
            self._froze_gc = False

    def run_meta(self) -> dict:
        """Facts about the task and model for the trace store's meta table."""
        task = self.task
        return {"task/name": task.name, "task/modulus": task.modulus, "task/n_classes": task.n_classes,
                "task/out_len": task.out_len or 1, "task/n_train": len(task.train_x),
                "task/random_targets": task.random_targets,
                "model/name": self.hparams.model,
                "model/n_params": sum(p.numel() for p in self.model.parameters())}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.grad_filter is not None:
            checkpoint["grokfast"] = self.grad_filter.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        _carry_step_count(checkpoint, lean=not self.automatic_optimization)
        if self.grad_filter is not None:
            self.grad_filter.load_state_dict(checkpoint.get("grokfast"))


_AUTO_STEPS = "epoch_loop.automatic_optimization.optim_progress"
_LEAN_STEPS = "epoch_loop.manual_optimization.optim_step_progress"


def _carry_step_count(checkpoint: dict, lean: bool) -> None:
    """Lightning counts ``global_step`` in the automatic- or the manual-optimization loop; a
    checkpoint written in the other mode (e.g. before ``lean_step`` existed) gets its optimizer
    step count copied to the loop this run uses, so the run resumes at its step."""
    loops = checkpoint.get("loops", {}).get("fit_loop", {})
    auto, manual = loops.get(_AUTO_STEPS), loops.get(_LEAN_STEPS)
    if auto is None or manual is None:
        return
    source, target = (auto["optimizer"]["step"], manual) if lean else (manual, auto["optimizer"]["step"])
    if target["total"]["completed"] == 0 and source["total"]["completed"] > 0:
        target.clear()
        target.update(copy.deepcopy(source))

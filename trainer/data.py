"""Lightning DataModule for the built-in tasks, with the data held as tensors.

The tasks are tiny (at most a few tens of thousands of examples), so there are no
DataLoader workers and no per-step collation: each training "batch" is a slice of
tensors that already live in memory. One epoch is ``steps_per_epoch`` optimizer steps,
so Lightning's per-epoch bookkeeping is paid rarely, and validation runs on a step
cadence (``val_check_interval``) rather than per epoch.

Example:
    >>> dm = TaskDataModule(task="x+y", p=59, frac=0.5)
    >>> dm.task.train_x.shape
    torch.Size([1740, 2])
"""

from __future__ import annotations

from typing import Iterator, Optional

import pytorch_lightning as pl
import torch

from .tasks import TaskData, build_task


class TensorBatches:
    """Yields ``(x, y, index)`` batches of in-memory tensors, ``steps`` times per epoch.

    ``batch_size=None`` is full batch: the same tensors every step (no copy).
    Minibatches are drawn from a seeded permutation, reshuffled each pass.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: Optional[int],
                 steps: int, seed: int = 0) -> None:
        self.x, self.y, self.steps = x, y, steps
        self.batch_size = batch_size
        self.index = torch.arange(len(x))
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.batch_size is None or self.batch_size >= len(self.x):
            for _ in range(self.steps):
                yield self.x, self.y, self.index
            return
        order = torch.randperm(len(self.x), generator=self.generator)
        start = 0
        for _ in range(self.steps):
            if start + self.batch_size > len(order):
                order, start = torch.randperm(len(self.x), generator=self.generator), 0
            idx = order[start:start + self.batch_size]
            start += self.batch_size
            yield self.x[idx], self.y[idx], idx


class TaskDataModule(pl.LightningDataModule):
    """One of the built-in tasks (see ``phasewatch.trainer.tasks.build_task``).

    Args:
        task: operation or task name, e.g. ``"x+y"``, ``"x/y"``, ``"s5"``, ``"parity"``,
            ``"keyvalue"``.
        p: prime modulus for the modular-arithmetic tasks.
        frac: training fraction of all examples.
        seed: seed of the split and of any label noise.
        batch_size: ``None`` for full batch (the canonical setting), else minibatch size.
        steps_per_epoch: optimizer steps per Lightning epoch.
        task_kwargs: further arguments of ``build_task`` (``corrupt``, ``random_labels``,
            ``n_bits``, ``k``, ``n_pairs`` ...).
    """

    def __init__(self, task: str = "x+y", p: int = 97, frac: float = 0.5, seed: int = 0,
                 batch_size: Optional[int] = None, steps_per_epoch: int = 1000,
                 task_kwargs: Optional[dict] = None) -> None:
        super().__init__()
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"data.batch_size must be a positive integer or null, got {batch_size}")
        if steps_per_epoch < 1:
            raise ValueError(f"data.steps_per_epoch must be >= 1, got {steps_per_epoch}")
        self.save_hyperparameters()
        self.task: TaskData = build_task(task, p=p, frac=frac, seed=seed, **(task_kwargs or {}))
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed

    def train_dataloader(self) -> TensorBatches:
        return TensorBatches(self.task.train_x, self.task.train_y, self.batch_size,
                             self.steps_per_epoch, self.seed)

    def val_dataloader(self) -> list[int]:
        # One placeholder batch: the module evaluates the full train and validation sets
        # itself in ``validation_step`` (see PhaseModule.evaluate).
        return [0]

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

from typing import Any, Callable, Iterator, Optional

import pytorch_lightning as pl
import torch

from .induction import FreshBatches, InductionTask, build_induction_task
from .tasks import TaskData, build_task


class TensorBatches:
    """Yields ``(x, y, index)`` batches of in-memory tensors, ``steps`` times per epoch.

    ``batch_size=None`` is full batch: the same tensors every step (no copy).
    Minibatch number g of the run is a pure function of g and ``seed``: pass g // per_pass of
    a seeded permutation (per_pass = len(x) // batch_size whole batches). An iteration starts
    at ``position()`` when it gives a number (the batches the trainer has trained on, restored
    on resume: it continues exactly where an uninterrupted run would be, whatever Lightning
    prefetched), else where the previous iteration stopped.

    Example:
        >>> x = torch.arange(10)[:, None]
        >>> epoch = lambda tb: [b[2].tolist() for b in tb]
        >>> tb = TensorBatches(x, x[:, 0], batch_size=4, steps=3, seed=0)
        >>> epoch(tb)[2] == epoch(TensorBatches(x, x[:, 0], 4, 3, 0, position=lambda: 2))[0]
        True
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: Optional[int],
                 steps: int, seed: int = 0,
                 position: Callable[[], Optional[int]] = lambda: None) -> None:
        self.x, self.y, self.steps = x, y, steps
        self.batch_size = batch_size
        self.index = torch.arange(len(x))
        self.seed, self.position = seed, position
        self._next = 0

    def __len__(self) -> int:
        return self.steps

    def _permutation(self, n_pass: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + n_pass)
        return torch.randperm(len(self.x), generator=gen)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if self.batch_size is None or self.batch_size >= len(self.x):
            for _ in range(self.steps):
                yield self.x, self.y, self.index
            return
        per_pass = len(self.x) // self.batch_size
        n_pass, order = -1, self.index
        first = self.position()
        first = self._next if first is None else first
        for g in range(first, first + self.steps):
            if g // per_pass != n_pass:
                n_pass = g // per_pass
                order = self._permutation(n_pass)
            start = (g % per_pass) * self.batch_size
            idx = order[start:start + self.batch_size]
            self._next = g + 1
            yield self.x[idx], self.y[idx], idx

    # Lightning's resumable-loader protocol: the position comes from the trainer, so there is
    # no iterator state to save; the seed is checked so a resumed run draws the same batches.
    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("seed", self.seed) != self.seed:
            raise ValueError(f"data.seed {self.seed} differs from the checkpoint's "
                             f"{state['seed']}: resume with the run's own config")


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
            ``n_bits``, ``k``, ``n_pairs`` ...); for ``"induction"`` those of
            ``build_induction_task`` (``vocab``, ``length``, ``segment``, ``n_eval``).
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
        if task == "induction":  # fresh random sequences every step (trainer/induction.py)
            if batch_size is None:
                raise ValueError("data.batch_size must be set for task 'induction' (fresh batches)")
            self.task: TaskData = build_induction_task(seed=seed, **(task_kwargs or {}))
        else:
            self.task = build_task(task, p=p, frac=frac, seed=seed, **(task_kwargs or {}))
        self.batch_size = batch_size
        self.steps_per_epoch = steps_per_epoch
        self.seed = seed

    def train_dataloader(self) -> "TensorBatches | FreshBatches":
        if isinstance(self.task, InductionTask):
            return FreshBatches(self.task, self.batch_size, self.steps_per_epoch, self.seed,
                                position=self._batches_trained)
        return TensorBatches(self.task.train_x, self.task.train_y, self.batch_size,
                             self.steps_per_epoch, self.seed, position=self._batches_trained)

    def _batches_trained(self) -> Optional[int]:
        """Batches the attached trainer has trained on (restored on resume); None without one."""
        trainer = getattr(self, "trainer", None)
        return None if trainer is None else trainer.global_step * trainer.accumulate_grad_batches

    def val_dataloader(self) -> list[int]:
        # One placeholder batch: the module evaluates the full train and validation sets
        # itself in ``validation_step`` (see PhaseModule.evaluate).
        return [0]

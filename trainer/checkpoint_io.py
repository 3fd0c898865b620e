"""Checkpoints written atomically and loaded with ``weights_only=True``.

``AtomicCheckpointIO`` (a Lightning ``CheckpointIO`` plugin) writes each checkpoint to a hidden
temporary file in the checkpoint folder, ``fsync``s it and renames it over the target: a full
disk or a kill mid-write leaves the previous ``last.ckpt`` intact and no truncated file (the
temporary file is removed on error, which also gives the space back). Loading defaults to
``torch.load(weights_only=True)``: a checkpoint is data, never code (phasewatch's own state is
plain tensors / numbers / strings; probe states are packed for it, see ``probe_checks``).

Example:
    >>> import pytorch_lightning as pl
    >>> trainer = pl.Trainer(plugins=[AtomicCheckpointIO()], max_steps=1)   # doctest: +SKIP
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` with temp-file + rename saves and ``weights_only=True`` loads."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Optional[Any] = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def load_checkpoint(self, path: Any, map_location: Optional[Callable] = lambda storage, loc: storage,
                        weights_only: Optional[bool] = None) -> dict[str, Any]:
        return super().load_checkpoint(path, map_location=map_location,
                                       weights_only=True if weights_only is None else weights_only)

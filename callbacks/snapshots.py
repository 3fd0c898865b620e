"""WeightSnapshot: save the model's weights at log-spaced steps, within a disk budget.

Files: ``<run dir>/snapshots/step_<step:09d>.npz`` (or ``.safetensors`` when the
``safetensors`` package is installed and ``format="auto"``), one array per ``state_dict`` key
of the probed model (``pl_module.model`` if it exists, else the LightningModule). When the next
file would exceed ``budget_mb``, the snapshot whose removal keeps the log-spacing most even
(smallest log-step gap between its neighbours, the incoming one included; never the first) is deleted first.
Rank 0 writes. On resume at step s, snapshots of the dead process after s are deleted.

Load for post-hoc analysis (devinterp LLC, TransformerLens, ...)::

    steps, paths = list_snapshots("runs/x")
    state = load_snapshot(paths[-1])           # {name: np.ndarray}
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})

Example:
    >>> from phasewatch.callbacks import WeightSnapshot
    >>> cb = WeightSnapshot(cadence="log:5", budget_mb=100)
"""

from __future__ import annotations

import io
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn

from ._base import PeriodicCallback, inner_model, run_dir

__all__ = ["WeightSnapshot", "list_snapshots", "load_snapshot"]

_NAME = re.compile(r"^step_(\d+)\.(npz|safetensors)$")


def _has_safetensors() -> bool:
    try:
        import safetensors.numpy  # noqa: F401
    except ImportError:
        return False
    return True


def list_snapshots(path: str | os.PathLike) -> tuple[list[int], list[Path]]:
    """(steps, paths) of the snapshots under ``path`` (a run dir or its ``snapshots/``)."""
    d = Path(path)
    if (d / "snapshots").is_dir():
        d = d / "snapshots"
    found = sorted((int(m.group(1)), d / f) for f in os.listdir(d) if (m := _NAME.match(f))) \
        if d.is_dir() else []
    return [s for s, _ in found], [p for _, p in found]


def load_snapshot(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """{parameter name: array} from one snapshot file (npz or safetensors)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file
        return load_file(str(path))
    with np.load(path, allow_pickle=False) as z:  # data only: an object array is refused
        return {k: z[k] for k in z.files}


class WeightSnapshot(PeriodicCallback):
    """Weight files at the steps ``cadence`` marks (see the module docstring).

    Args:
        cadence: default ``"log:5"`` (about 5 snapshots per decade of steps).
        budget_mb: disk budget for all snapshots of the run.
        dirpath: where to write; default ``<run dir>/snapshots``.
        format: ``"auto"`` (safetensors if installed, else npz), ``"npz"`` or ``"safetensors"``.
    """

    def __init__(self, cadence: Any = "log:5", budget_mb: float = 200.0,
                 dirpath: str | os.PathLike | None = None, format: str = "auto"):
        super().__init__(cadence)
        if not budget_mb > 0:
            raise ValueError(f"budget_mb must be > 0, got {budget_mb!r}")
        if format not in ("auto", "npz", "safetensors"):
            raise ValueError(f"format must be 'auto', 'npz' or 'safetensors', got {format!r}")
        if format == "safetensors" and not _has_safetensors():
            raise ValueError("format='safetensors' needs the safetensors package")
        self.budget_bytes = int(budget_mb * 2**20)
        self.dirpath = dirpath
        self.format = format
        self._dir: Path | None = None
        self._warned = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        base = self.dirpath or (Path(run_dir(trainer)) / "snapshots" if run_dir(trainer)
                                else Path(trainer.default_root_dir) / "snapshots")
        self._dir = Path(base)

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.is_global_zero and trainer.global_step > 0:  # resume: drop the dead run's tail
            steps, paths = list_snapshots(self._dir)
            for s, p in zip(steps, paths):
                if s > trainer.global_step:
                    p.unlink(missing_ok=True)
        if self._take(trainer.global_step):
            self._save(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._take(trainer.global_step):
            self._save(trainer, pl_module)

    def _save(self, trainer, pl_module) -> None:
        if not trainer.is_global_zero:
            return
        state = {k: v.detach().cpu().numpy().copy() for k, v in
                 inner_model(pl_module).state_dict().items() if isinstance(v, torch.Tensor)}
        use_st = self.format == "safetensors" or (self.format == "auto" and _has_safetensors())
        if use_st:
            from safetensors.numpy import save
            payload = save({k: np.ascontiguousarray(v) for k, v in state.items()})
        else:
            buf = io.BytesIO()
            np.savez(buf, **state)
            payload = buf.getvalue()
        if len(payload) > self.budget_bytes:
            if not self._warned:
                rank_zero_warn(f"WeightSnapshot: one snapshot ({len(payload)} B) exceeds "
                               "budget_mb; snapshots skipped")
                self._warned = True
            return
        self._dir.mkdir(parents=True, exist_ok=True)
        self._evict(len(payload), int(trainer.global_step))
        dest = self._dir / f"step_{trainer.global_step:09d}.{'safetensors' if use_st else 'npz'}"
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self._dir)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
            os.replace(tmp, dest)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _evict(self, incoming: int, step: int) -> None:
        """Delete snapshots until ``incoming`` more bytes fit: each time the one (never the
        first) whose neighbours, counting the incoming ``step``, are closest in log-step."""
        steps, paths = list_snapshots(self._dir)
        sizes = [p.stat().st_size for p in paths]
        while steps and sum(sizes) + incoming > self.budget_bytes:
            if len(steps) == 1:
                i = 0
            else:
                logs = [math.log1p(s) for s in steps + [step]]
                i = 1 + int(np.argmin([logs[j + 1] - logs[j - 1] for j in range(1, len(steps))]))
            paths[i].unlink(missing_ok=True)
            del steps[i], paths[i], sizes[i]

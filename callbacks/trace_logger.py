"""TraceLogger: a Lightning logger that writes the run directory's trace store (rank 0 only).

Run directory: ``<root_dir>/<name>-<version>/`` with ``trace.sqlite``, ``arrays/``, ``hparams.yaml``;
``<root_dir>/latest`` is a relative symlink to the newest run dir (best effort). With this
logger FIRST in ``trainer.loggers``, ``trainer.log_dir`` is the run dir (LightningCLI's
``config.yaml`` lands there) and a ``ModelCheckpoint`` without ``dirpath`` writes to
``<run dir>/checkpoints``: for that, the Lightning-facing ``name`` and ``version`` properties
are ``""`` (Lightning builds ``save_dir/name/version/checkpoints``); the experiment name and
version are ``experiment_name``, ``run_version`` and ``run_id``.

Steps are what Lightning passes to ``log_metrics``. Note Lightning's own convention: metrics
from ``self.log`` in ``training_step`` and in-epoch validation arrive at ``global_step - 1``
(``_batches_that_stepped`` before its increment), while ``log_scalars`` below logs at
``trainer.global_step``. Flushes: every ``flush_every_rows`` rows / ``flush_every_s`` seconds,
when due at ``save()`` (Lightning calls it every ``log_every_n_steps``), after every checkpoint
save, and in ``finalize`` (end of fit, also on exceptions); the routine ones (rows / seconds)
run on a writer thread (``BackgroundTraceWriter``), the others wait until written. Resuming in the same run dir (pass the same
``version``) supersedes the dead process's rows, see ``phasewatch.analysis.store``.

Example:
    >>> import pytorch_lightning as pl
    >>> logger = TraceLogger(root_dir="runs", name="grok", version="v1")
    >>> logger.log_dir
    'runs/grok-v1'
    >>> trainer = pl.Trainer(logger=logger, max_steps=10)          # doctest: +SKIP
"""
from __future__ import annotations

import os
import re
import secrets
import sqlite3
import time
import warnings
import weakref
from argparse import Namespace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytorch_lightning as pl
from lightning_fabric.loggers.logger import rank_zero_experiment
from lightning_fabric.utilities.logger import _convert_params
from pytorch_lightning.loggers import Logger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from phasewatch.analysis.store import TraceWriter
from phasewatch.analysis.store_background import BackgroundTraceWriter

__all__ = ["TraceLogger", "find_trace_logger", "log_scalars", "log_array", "set_meta",
           "split_run_id"]

_RUN_ID = re.compile(r"(?P<name>.+)-(?P<version>\d{8}-\d{6}-[0-9a-f]{4})")


def _default_version() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def split_run_id(run_id: str) -> tuple[str, str]:
    """``(name, version)`` of a run id ``<name>-<default version>`` (the name may hold "-").

    Example:
        >>> split_run_id("my-run-20261127-041502-3f9a")
        ('my-run', '20261127-041502-3f9a')
    """
    m = _RUN_ID.fullmatch(run_id)
    if m is None:
        raise ValueError(f"{run_id!r} is not a run id <name>-<YYYYmmdd-HHMMSS-xxxx>")
    return m["name"], m["version"]


def _to_float(value: Any) -> float:
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return float(value.item() if hasattr(value, "item") else value)


def _close_writer(writer: TraceWriter) -> None:  # interpreter exit / garbage collection
    try:
        writer.close()
    except Exception:  # noqa: BLE001 - best effort at exit; the last flush window is lost
        pass


class TraceLogger(Logger):
    """Lightning logger writing scalars / hparams to ``<root_dir>/<name>-<version>/trace.sqlite``.

    Args:
        root_dir: folder holding run directories (and the ``latest`` symlink).
        name: experiment name (no path separators).
        version: run version; default ``YYYYmmdd-HHMMSS-xxxx`` (UTC + random). Pass the same
            version to resume into the same run directory.
        flush_every_rows, flush_every_s: the store's batching (see ``TraceWriter``).
        background: write routine flushes on a writer thread (``BackgroundTraceWriter``), off
            the training thread; False writes them in the calling thread (``TraceWriter``).
    """

    def __init__(self, root_dir: str | os.PathLike = "runs", name: str | None = "run",
                 version: str | int | None = None, flush_every_rows: int = 1000,
                 flush_every_s: float = 5.0, background: bool = True) -> None:
        super().__init__()
        name = "run" if name is None else str(name)
        version = _default_version() if version is None else str(version)
        for label, v in (("name", name), ("version", version)):
            if not v or "/" in v or os.sep in v or v in (".", ".."):
                raise ValueError(f"TraceLogger {label} must be a plain non-empty folder name, got {v!r}")
        if int(flush_every_rows) < 1:
            raise ValueError(f"flush_every_rows must be >= 1, got {flush_every_rows!r}")
        if not float(flush_every_s) >= 0:
            raise ValueError(f"flush_every_s must be >= 0, got {flush_every_s!r}")
        self._root_dir = os.fspath(root_dir)
        self.experiment_name = name
        self.run_version = version
        self.run_id = f"{name}-{version}"
        self._flush_every_rows = int(flush_every_rows)
        self._flush_every_s = float(flush_every_s)
        self._writer = BackgroundTraceWriter if background else TraceWriter
        self._store: TraceWriter | None = None
        self._sessions = 0
        self._last_step = 0
        self._durable_through = -1  # step of the last checkpoint (see after_save_checkpoint)
        self._finalizer: Any = None

    # ---- Lightning-facing identity (see module docstring for the "" name / version) ----
    @property
    def name(self) -> str:
        return ""

    @property
    def version(self) -> str:
        return ""

    @property
    def root_dir(self) -> str:
        return self._root_dir

    @property
    def log_dir(self) -> str:
        """The run directory ``<root_dir>/<name>-<version>``."""
        return os.path.join(self._root_dir, self.run_id)

    @property
    def save_dir(self) -> str:
        return self.log_dir

    # ---- the store ----
    @property
    def store(self) -> TraceWriter | None:
        """The run's ``TraceWriter`` on rank 0 (opened on first use); ``None`` on other ranks."""
        if rank_zero_only.rank != 0:
            return None
        if self._store is None or self._store.closed:
            # the first writer of this logger applies the resume supersede rule; a reopen after
            # finalize (e.g. trainer.test after fit) continues the same logical session
            self._store = self._writer(self.log_dir, flush_every_rows=self._flush_every_rows,
                                       flush_every_s=self._flush_every_s,
                                       supersede=self._sessions == 0)
            self._sessions += 1
            if self._sessions == 1:  # a reopen after finalize keeps the recorded status
                self._store.set_meta("run_id", self.run_id)
                self._store.set_meta("status", "running")
            self._finalizer = weakref.finalize(self, _close_writer, self._store)
            self._update_latest()
        return self._store

    @property
    @rank_zero_experiment
    def experiment(self) -> TraceWriter | None:
        return self.store

    def _update_latest(self) -> None:
        """Point ``<root_dir>/latest`` at this run dir (relative symlink, atomic replace)."""
        link = Path(self._root_dir) / "latest"
        tmp = Path(self._root_dir) / f".latest-{secrets.token_hex(4)}"
        try:
            os.symlink(self.run_id, tmp, target_is_directory=True)
            os.replace(tmp, link)
        except OSError:  # e.g. no symlinks on this filesystem, or "latest" is a real folder
            if tmp.is_symlink():
                tmp.unlink()

    # ---- Logger API ----
    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        step = self._last_step if step is None else int(step)
        self._last_step = step
        self.store.log_scalars({k: _to_float(v) for k, v in metrics.items()}, step)
        if step <= self._durable_through:
            self.store.flush()

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace | None = None, *args: Any,
                        **kwargs: Any) -> None:
        """Store hyperparameters as meta ``hparams`` and ``<run dir>/hparams.yaml``."""
        import json

        import yaml

        params = _convert_params(params) or {}
        plain = json.loads(json.dumps(params, default=str))
        self.store.set_meta("hparams", plain)
        with open(os.path.join(self.log_dir, "hparams.yaml"), "w") as f:
            yaml.safe_dump(plain, f, sort_keys=False)

    @rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Flush, and flush at once every row logged afterwards at a step <= the checkpoint's:
        a run resumed from it does not log those steps again (store.py, supersede rule), so a
        process killed before its next regular flush would otherwise lose them for good."""
        store = self.store
        step = int(getattr(checkpoint_callback, "_last_global_step_saved", -1))
        store.set_meta("last_checkpoint", {
            "path": str(getattr(checkpoint_callback, "last_model_path", "") or ""), "step": step})
        store.flush()
        self._durable_through = step

    @rank_zero_only
    def save(self) -> None:
        """Lightning calls this every ``log_every_n_steps``: flush when the store's row / time
        threshold is due (a hard flush per call would write one tiny chunk per step)."""
        if self._store is not None and not self._store.closed:
            self._store.maybe_flush()

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Flush, record ``status`` ("success", "failed", ...) in meta and close the store."""
        if self._store is None or self._store.closed:
            if self._sessions == 0:
                return  # never logged anything: do not create an empty run dir
        store = self.store
        try:
            store.set_meta("status", status)
            store.close()
        except (sqlite3.Error, OSError) as err:
            if not store.closed:  # close() releases the file and the lock even when it fails
                try:
                    store.close()
                except (sqlite3.Error, OSError):
                    pass
            if status == "success":
                raise
            warnings.warn(f"phasewatch: could not record status {status!r} in {store.path} ({err}); "
                          "rows up to the last flush are kept", RuntimeWarning, stacklevel=2)


# ---- helpers for callbacks ------------------------------------------------------------------
def find_trace_logger(trainer: "pl.Trainer") -> TraceLogger | None:
    """The first ``TraceLogger`` among ``trainer.loggers``, else ``None``."""
    for lg in getattr(trainer, "loggers", None) or []:
        if isinstance(lg, TraceLogger):
            return lg
    return None


def log_scalars(trainer: "pl.Trainer", metrics: Mapping[str, Any]) -> None:
    """Send ``metrics`` (tensors or numbers) to every logger at ``trainer.global_step`` (rank 0)."""
    if not metrics or not trainer.is_global_zero:
        return
    values = {k: _to_float(v) for k, v in metrics.items()}
    for lg in trainer.loggers:
        lg.log_metrics(dict(values), step=int(trainer.global_step))


def log_array(trainer: "pl.Trainer", name: str, array: Any) -> None:
    """Write ``array`` (numpy or tensor) at ``trainer.global_step`` to the trace store (rank 0;
    no-op without a TraceLogger)."""
    if not trainer.is_global_zero:
        return
    lg = find_trace_logger(trainer)
    store = None if lg is None else lg.store
    if store is None:
        return
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    store.log_array(name, int(trainer.global_step), np.asarray(array))
    if trainer.global_step <= lg._durable_through:  # see TraceLogger.after_save_checkpoint
        store.flush()


def set_meta(trainer: "pl.Trainer", key: str, value: Any) -> None:
    """Record run metadata in the trace store (rank 0; no-op without a TraceLogger)."""
    lg = find_trace_logger(trainer) if trainer.is_global_zero else None
    if lg is not None and lg.store is not None:
        lg.store.set_meta(key, value)

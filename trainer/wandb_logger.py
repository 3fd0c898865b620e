"""Weights & Biases logging that can never stop training.

``build_wandb_logger`` returns a Lightning ``WandbLogger`` whose every call is guarded:
if W&B cannot start (no network, bad key, full disk) or fails later, phasewatch warns
once and carries on; the local trace store stays the source of truth. With no
credentials (no ``WANDB_API_KEY``, no ``~/.netrc`` entry) the run is logged offline into
the run directory, to be uploaded later with ``wandb sync``.

Example:
    >>> logger = build_wandb_logger("runs/demo-1", name="demo-1", mode="offline")
    >>> # pl.Trainer(logger=[trace_logger, logger])
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any, Optional

from pytorch_lightning.loggers import WandbLogger

from phasewatch.analysis.wandb_pull import credentials_available

MODES = ("auto", "online", "offline", "disabled")


def resolve_mode(mode: str) -> str:
    """``auto`` -> ``online`` with credentials, ``offline`` without; WANDB_MODE wins."""
    if mode not in MODES:
        raise ValueError(f"run.wandb must be one of {MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode in ("online", "offline", "disabled"):
        return env_mode
    return "online" if credentials_available() else "offline"


def _guarded(method):
    """Run a WandbLogger method; on failure warn once and disable the logger."""
    @functools.wraps(method)
    def call(self: "SafeWandbLogger", *args: Any, **kwargs: Any) -> Any:
        if self.failed:
            return None
        try:
            return method(self, *args, **kwargs)
        except Exception as error:  # noqa: BLE001 - W&B must never stop training
            self.failed = True
            warnings.warn(f"W&B logging stopped ({type(error).__name__}: {error}); training "
                          f"goes on and the local trace in the run directory is complete.",
                          RuntimeWarning, stacklevel=2)
            return None
    return call


class SafeWandbLogger(WandbLogger):
    """A WandbLogger whose failures warn once instead of raising."""

    failed = False

    log_metrics = _guarded(WandbLogger.log_metrics)
    log_hyperparams = _guarded(WandbLogger.log_hyperparams)
    after_save_checkpoint = _guarded(WandbLogger.after_save_checkpoint)

    @_guarded
    def finalize(self, status: str) -> None:
        """Close the W&B run at the end of fit, so the offline run file is complete."""
        super().finalize(status)
        if self._experiment is not None:
            self._experiment.finish(exit_code=0 if status == "success" else 1)


STARTUP_TIMEOUT_S = 8.0  # leaves room under load for the 15 s bound; wandb's own default init_timeout is 90 s of silence


def build_wandb_logger(run_dir: str, name: str, mode: str = "auto", project: str = "phasewatch",
                       startup_timeout: float = STARTUP_TIMEOUT_S,
                       **kwargs: Any) -> Optional[SafeWandbLogger]:
    """A started W&B logger writing into ``run_dir/wandb``, or ``None`` (disabled or failed).

    Start-up (``wandb.init``, login included) is bounded by ``startup_timeout`` seconds: an
    unreachable server costs that long, then a warning, and training goes on without W&B.
    """
    mode = resolve_mode(mode)
    if mode == "disabled":
        return None
    try:
        import wandb

        # No git probing, console capture or system-stats sampler: they cost CPU during
        # training and the run directory already records the config.
        settings = wandb.Settings(mode=mode, disable_git=True, console="off", x_disable_stats=True,
                                  init_timeout=startup_timeout, login_timeout=startup_timeout / 2,
                                  x_graphql_retry_max=1,
                                  x_graphql_timeout_seconds=startup_timeout / 3)
        # The mode goes to wandb.init itself: Lightning's offline=True would set WANDB_MODE in
        # os.environ for the rest of the process (a notebook's next online run included).
        logger = SafeWandbLogger(name=name, project=project, save_dir=run_dir, mode=mode,
                                 id=os.path.basename(os.path.normpath(run_dir)), resume="allow",
                                 settings=settings, **kwargs)
        logger.experiment  # start now, so a failure shows here and not in the middle of training
    except Exception as error:  # noqa: BLE001 - W&B must never stop training
        warnings.warn(f"W&B could not start ({type(error).__name__}: {error}); training without it. "
                      f"The local trace in {run_dir} is complete.", RuntimeWarning, stacklevel=2)
        return None
    return logger

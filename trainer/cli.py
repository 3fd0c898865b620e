"""``phasewatch fit``: LightningCLI over the built-in tasks and models.

Every run gets its own directory ``<trainer.default_root_dir>/<run.name>-<version>``
holding the trace store (the source of truth), the resolved ``config.yaml``, the
checkpoints and, unless ``run.wandb: disabled``, the W&B files. ``runs/latest`` points
at the newest run.

Example:
    phasewatch fit --config configs/modadd_mlp.yaml
    phasewatch fit --config configs/modadd_mlp.yaml --run.tracking false   # bare run
    phasewatch fit --config configs/modadd_mlp.yaml --run.resume runs/modadd_mlp-2026...
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from lightning_fabric.plugins import CheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from phasewatch.analysis.store import TRACE_FILE, RunDirBusy
from phasewatch.callbacks.defaults import default_callbacks
from phasewatch.callbacks.phase_monitor import PhaseMonitor
from phasewatch.callbacks.trace_logger import TraceLogger, split_run_id

from .checkpoint_io import AtomicCheckpointIO
from .data import TaskDataModule
from .module import PhaseModule
from .wandb_logger import build_wandb_logger, resolve_mode


@dataclass
class RunOptions:
    """Options of a run that are neither model, data nor Lightning trainer settings.

    Args:
        name: prefix of the run directory and the W&B run name.
        wandb: ``auto`` (online with credentials, else offline), ``online``, ``offline``
            or ``disabled``.
        wandb_project: W&B project.
        tracking: attach phasewatch's default callbacks (False: a bare run, e.g. to
            measure their overhead).
        checkpoint_every: save ``checkpoints/last.ckpt`` every this many steps.
        resume: an existing run directory to continue from its last checkpoint.
        stop_after_generalization: stop this many steps after validation accuracy has
            reached 0.99 and stayed there (``PhaseMonitor``); ``None`` trains to ``max_steps``.
    """

    name: str = "run"
    wandb: str = "auto"
    wandb_project: str = "phasewatch"
    tracking: bool = True
    checkpoint_every: int = 500
    resume: Optional[str] = None
    stop_after_generalization: Optional[int] = None


class PhaseCLI(LightningCLI):
    """LightningCLI with phasewatch's run directory, loggers and callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")
        parser.link_arguments("data", "model.task", compute_fn=lambda data: data.task,
                              apply_on="instantiate")
        parser.set_defaults({"trainer.default_root_dir": "runs", "trainer.check_val_every_n_epoch": None,
                             "trainer.enable_model_summary": False, "trainer.num_sanity_val_steps": 0})

    run_dir: Optional[str] = None  # of the last instantiated trainer (for main's error line)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        run = config.run
        resolve_mode(run.wandb)  # fail at start on a bad value, naming the field
        if run.checkpoint_every < 1:
            raise ValueError(f"run.checkpoint_every must be >= 1, got {run.checkpoint_every}")
        if config.get("weights_only") is None:
            config["weights_only"] = True  # a checkpoint is data: never unpickle code from it
        if run.resume:
            run_dir = Path(run.resume)
            ckpt = run_dir / "checkpoints" / "last.ckpt"
            try:
                split_run_id(run_dir.name)
            except ValueError as err:
                raise RunConfigError(f"run.resume: {err}; pass a run directory that phasewatch "
                                     "fit created") from None
            if ckpt.is_file():
                config["ckpt_path"] = str(ckpt)
            elif (run_dir / TRACE_FILE).is_file():  # killed before its first checkpoint
                print(f"phasewatch fit: {run_dir} has no checkpoint yet (it stopped before "
                      f"run.checkpoint_every steps); training it again from step 0 in the same "
                      "directory", file=sys.stderr)
            else:
                raise RunConfigError(f"run.resume: {run_dir} holds neither {ckpt.name} nor "
                                     f"{TRACE_FILE}; pass a run directory that phasewatch fit created")

    def instantiate_trainer(self, **kwargs):
        config = self.config_init[self.subcommand]
        run, trainer_cfg = config.run, config.trainer
        if run.resume:
            run_dir = Path(run.resume)
            name, version = split_run_id(run_dir.name)
            trace = TraceLogger(root_dir=str(run_dir.parent), name=name, version=version)
        else:
            trace = TraceLogger(root_dir=trainer_cfg.default_root_dir, name=run.name)
        type(self).run_dir = trace.log_dir
        trace.store  # noqa: B018 - take the run directory's writer lock before anything writes
        loggers = [trace]
        wandb_logger = build_wandb_logger(trace.log_dir, name=os.path.basename(trace.log_dir),
                                          mode=run.wandb, project=run.wandb_project)
        if wandb_logger is not None:
            loggers.append(wandb_logger)
        callbacks = [ModelCheckpoint(dirpath=os.path.join(trace.log_dir, "checkpoints"),
                                     every_n_train_steps=run.checkpoint_every, save_last=True)]
        if run.tracking:
            callbacks += default_callbacks()
        if run.stop_after_generalization is not None:  # the default PhaseMonitor stands down for it
            callbacks.append(PhaseMonitor(stop_after_generalization=run.stop_after_generalization))
        callbacks += list(trainer_cfg.callbacks or [])  # the config's own callbacks come last
        plugins = trainer_cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(logger=loggers, callbacks=callbacks, plugins=plugins,
                                           **kwargs)


class RunConfigError(ValueError):
    """A ``run.resume`` that cannot work; ``main`` prints it as one line (exit status 2)."""


def _disk_full(error: BaseException) -> bool:
    """True for ENOSPC anywhere in the exception chain (OSError or SQLite's 'disk is full')."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``phasewatch fit``; ``argv`` are the arguments after ``fit``."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    PhaseCLI.run_dir = None
    try:
        cli = PhaseCLI(PhaseModule, TaskDataModule, args=["fit", *(argv or [])],
                       save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    except (RunConfigError, RunDirBusy) as err:
        print(f"phasewatch fit: error: {err}", file=sys.stderr)
        return 2 if isinstance(err, RunConfigError) else 1
    except Exception as err:  # noqa: BLE001 - only a full disk is turned into one line here
        if not _disk_full(err):
            raise
        where = PhaseCLI.run_dir or "the run directory"
        print(f"phasewatch fit: error: disk full ({err}); the run is marked failed and its last "
              f"complete checkpoint is kept. Free space, then continue it with "
              f"`phasewatch fit --config ... --run.resume {where}`", file=sys.stderr)
        return 1
    print(f"run directory: {cli.trainer.log_dir}\nanalyze it: phasewatch analyze {cli.trainer.log_dir}")
    return 0

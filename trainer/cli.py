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

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from phasewatch.callbacks.defaults import default_callbacks
from phasewatch.callbacks.phase_monitor import PhaseMonitor
from phasewatch.callbacks.trace_logger import TraceLogger, split_run_id

from .data import TaskDataModule
from .module import PhaseModule
from .threads import resolve_threads
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
        threads: torch threads; ``None`` chooses from the model size and the free cores
            (``phasewatch.trainer.threads``; env ``PHASEWATCH_THREADS`` also overrides).
        wandb_group: W&B group of the run (a sweep sets it to the sweep's name).
    """

    name: str = "run"
    wandb: str = "auto"
    wandb_project: str = "phasewatch"
    tracking: bool = True
    checkpoint_every: int = 500
    resume: Optional[str] = None
    stop_after_generalization: Optional[int] = None
    threads: Optional[int] = None
    wandb_group: Optional[str] = None


class PhaseCLI(LightningCLI):
    """LightningCLI with phasewatch's run directory, loggers and callbacks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")
        parser.link_arguments("data", "model.task", compute_fn=lambda data: data.task,
                              apply_on="instantiate")
        parser.set_defaults({"trainer.default_root_dir": "runs", "trainer.check_val_every_n_epoch": None,
                             "trainer.enable_model_summary": False, "trainer.num_sanity_val_steps": 0})

    def before_instantiate_classes(self) -> None:
        run = self.config[self.subcommand].run
        resolve_mode(run.wandb)  # fail at start on a bad value, naming the field
        if run.threads is not None and run.threads < 1:
            raise ValueError(f"run.threads must be >= 1 or null (auto), got {run.threads}")
        if run.checkpoint_every < 1:
            raise ValueError(f"run.checkpoint_every must be >= 1, got {run.checkpoint_every}")
        if run.resume:
            ckpt = Path(run.resume) / "checkpoints" / "last.ckpt"
            try:
                split_run_id(Path(run.resume).name)
            except ValueError as err:
                raise ValueError(f"run.resume: {err}; pass a run directory that phasewatch fit "
                                 "created") from None
            if not ckpt.is_file():
                raise ValueError(f"run.resume: no checkpoint at {ckpt}; pass a run directory "
                                 f"that was trained with checkpoints")
            self.config[self.subcommand]["ckpt_path"] = str(ckpt)

    def instantiate_trainer(self, **kwargs):
        config = self.config_init[self.subcommand]
        run, trainer_cfg = config.run, config.trainer
        self._set_threads(run.threads)
        if run.resume:
            run_dir = Path(run.resume)
            name, version = split_run_id(run_dir.name)
            trace = TraceLogger(root_dir=str(run_dir.parent), name=name, version=version)
        else:
            trace = TraceLogger(root_dir=trainer_cfg.default_root_dir, name=run.name)
        loggers = [trace]
        wandb_logger = build_wandb_logger(trace.log_dir, name=os.path.basename(trace.log_dir),
                                          mode=run.wandb, project=run.wandb_project,
                                          **({"group": run.wandb_group} if run.wandb_group else {}))
        if wandb_logger is not None:
            loggers.append(wandb_logger)
        callbacks = [ModelCheckpoint(dirpath=os.path.join(trace.log_dir, "checkpoints"),
                                     every_n_train_steps=run.checkpoint_every, save_last=True)]
        if run.tracking:
            callbacks += default_callbacks()
        if run.stop_after_generalization is not None:  # the default PhaseMonitor stands down for it
            callbacks.append(PhaseMonitor(stop_after_generalization=run.stop_after_generalization))
        callbacks += list(trainer_cfg.callbacks or [])  # the config's own callbacks come last
        return super().instantiate_trainer(logger=loggers, callbacks=callbacks, **kwargs)

    def _set_threads(self, requested: Optional[int]) -> None:
        task = self.datamodule.task
        examples = min(self.datamodule.batch_size or len(task.train_x), len(task.train_x))
        n_params = sum(p.numel() for p in self.model.parameters())
        n, why = resolve_threads(requested, n_params, examples)
        torch.set_num_threads(n)
        rank_zero_info(f"torch threads: {n} ({why})")


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``phasewatch fit``; ``argv`` are the arguments after ``fit``."""
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    cli = PhaseCLI(PhaseModule, TaskDataModule, args=["fit", *(argv or [])],
                   save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False)
    print(f"run directory: {cli.trainer.log_dir}\nanalyze it: phasewatch analyze {cli.trainer.log_dir}")
    return 0

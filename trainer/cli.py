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

import argparse
import contextlib
import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from phasewatch.callbacks.defaults import default_callbacks
from phasewatch.callbacks.phase_monitor import PhaseMonitor
from phasewatch.callbacks.trace_logger import TraceLogger, split_run_id

from phasewatch.analysis.cli_errors import option_strings, with_suggestion

from .data import TaskDataModule
from .fit_console import EventPrinter, StepProgressBar, usage_error
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

    def before_instantiate_classes(self) -> None:
        run = self.config[self.subcommand].run
        resolve_mode(run.wandb)  # fail at start on a bad value, naming the field
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
        if run.resume:
            run_dir = Path(run.resume)
            name, version = split_run_id(run_dir.name)
            trace = TraceLogger(root_dir=str(run_dir.parent), name=name, version=version)
        else:
            trace = TraceLogger(root_dir=trainer_cfg.default_root_dir, name=run.name)
        loggers = [trace]
        wandb_logger = build_wandb_logger(trace.log_dir, name=os.path.basename(trace.log_dir),
                                          mode=run.wandb, project=run.wandb_project)
        if wandb_logger is not None:
            loggers.append(wandb_logger)
            # the whole resolved config: model / data come from save_hyperparameters, these not
            cfg = self.config[self.subcommand]
            wandb_logger.log_hyperparams({"trainer": _plain(cfg.trainer), "run": _plain(cfg.run)})
        callbacks = [ModelCheckpoint(dirpath=os.path.join(trace.log_dir, "checkpoints"),
                                     every_n_train_steps=run.checkpoint_every, save_last=True)]
        if run.tracking:
            callbacks += default_callbacks()
        if run.stop_after_generalization is not None:  # the default PhaseMonitor stands down for it
            callbacks.append(PhaseMonitor(stop_after_generalization=run.stop_after_generalization))
        callbacks += list(trainer_cfg.callbacks or [])  # the config's own callbacks come last
        if trainer_cfg.enable_progress_bar is not False:
            callbacks.append(StepProgressBar())
        callbacks.append(EventPrinter())  # after PhaseMonitor: prints its events and the class
        _STATE["parsed"] = True
        return super().instantiate_trainer(logger=loggers, callbacks=callbacks, **kwargs)

    def parse_arguments(self, parser, args) -> None:
        _STATE["parser"] = parser  # for "did you mean" when parsing fails
        super().parse_arguments(parser, args)

    def before_fit(self) -> None:
        _STATE["fitting"] = True


def _plain(namespace) -> dict:
    """A jsonargparse Namespace as plain, JSON-able dicts (classes as their import path)."""
    d = namespace.as_dict() if hasattr(namespace, "as_dict") else dict(vars(namespace))
    return json.loads(json.dumps(d, default=str))


#: where PhaseCLI got to, for main()'s error handling (the CLI object never returns on errors)
_STATE: dict = {}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``phasewatch fit``; ``argv`` are the arguments after ``fit``.

    A bad option or value (before training starts) is one line on stderr and exit status 2,
    with "did you mean" for a near-miss key; errors during training keep their traceback.
    """
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    _STATE.clear()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):  # jsonargparse prints usage + error, then exits 2
            cli = PhaseCLI(PhaseModule, TaskDataModule, args=["fit", *(argv or [])],
                           save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
                           parser_kwargs={"fit": {"exit_on_error": False}})
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return 0
        return usage_error(_last_error(err.getvalue()))
    except (ValueError, TypeError, KeyError, argparse.ArgumentError) as e:
        if _STATE.get("fitting"):
            sys.stderr.write(err.getvalue())
            raise
        return usage_error(_with_suggestion(str(e)))
    sys.stderr.write(err.getvalue())
    print(f"run directory: {cli.trainer.log_dir}\nanalyze it: phasewatch analyze {cli.trainer.log_dir}")
    return 0


def _with_suggestion(message: str) -> str:
    parser = _STATE.get("parser")
    return with_suggestion(message, option_strings(parser)) if parser is not None else message


def _last_error(text: str) -> str:
    """The ``error: ...`` line of jsonargparse's output (else its last line)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    hits = [ln.split("error:", 1)[1].strip() for ln in lines if "error:" in ln]
    return _with_suggestion(hits[-1] if hits else (lines[-1] if lines else "bad arguments"))

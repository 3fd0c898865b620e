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
import errno
import io
import json
import os
import sqlite3
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from lightning_fabric.plugins import CheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_info

from phasewatch.analysis.store import TRACE_FILE, RunDirBusy
from phasewatch.callbacks.defaults import default_callbacks
from phasewatch.callbacks.phase_monitor import PhaseMonitor
from phasewatch.callbacks.trace_logger import TraceLogger, split_run_id

from phasewatch.analysis.cli_errors import option_strings, with_suggestion

from .allocator import keep_freed_memory
from .checkpoint_io import AtomicCheckpointIO
from .data import TaskDataModule
from .fit_console import EventPrinter, StepProgressBar, usage_error
from .module import PhaseModule
from .null_profiler import NullProfiler
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

    run_dir: Optional[str] = None  # of the last instantiated trainer (for main's error line)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        run = config.run
        resolve_mode(run.wandb)  # fail at start on a bad value, naming the field
        if run.threads is not None and run.threads < 1:
            raise ValueError(f"run.threads must be >= 1 or null (auto), got {run.threads}")
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
        self._set_threads(run.threads, processes_per_host(trainer_cfg.devices))
        keep_freed_memory()  # else glibc hands a step's freed activations back to the OS
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
                                          mode=run.wandb, project=run.wandb_project,
                                          **({"group": run.wandb_group} if run.wandb_group else {}))
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
        plugins = trainer_cfg.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            plugins.append(AtomicCheckpointIO())
        if trainer_cfg.get("profiler") is None:  # Lightning's default costs ~50 us a step
            kwargs.setdefault("profiler", NullProfiler())
        return super().instantiate_trainer(logger=loggers, callbacks=callbacks, plugins=plugins,
                                           **kwargs)

    def parse_arguments(self, parser, args) -> None:
        _STATE["parser"] = parser  # for "did you mean" when parsing fails
        super().parse_arguments(parser, args)

    def before_fit(self) -> None:
        _STATE["fitting"] = True
        if "stderr" not in _STATE:  # PhaseCLI used directly, not through main()
            return
        buffered, real = _STATE["stderr"]  # options parsed: training's own stderr goes out live
        real.write(buffered.getvalue())
        buffered.seek(0)
        buffered.truncate()
        sys.stderr = real

    def _set_threads(self, requested: Optional[int], processes: int) -> None:
        task = self.datamodule.task
        examples = min(self.datamodule.batch_size or len(task.train_x), len(task.train_x))
        n_params = sum(p.numel() for p in self.model.parameters())
        n, why = resolve_threads(requested, n_params, examples, processes)
        torch.set_num_threads(n)
        rank_zero_info(f"torch threads: {n} ({why})")


def processes_per_host(devices) -> int:
    """Training processes this run starts on each host: ``trainer.devices`` when it is a count
    or a list of devices, else one (for "auto" or -1).

    Example:
        >>> processes_per_host(2), processes_per_host("2"), processes_per_host([0, 1]), processes_per_host("auto")
        (2, 2, 2, 1)
    """
    if isinstance(devices, (list, tuple)):
        return max(1, len(devices))
    text = str(devices).strip()
    return int(text) if text.isdigit() and int(text) > 0 else 1


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
    PhaseCLI.run_dir = None
    _STATE.clear()
    err = io.StringIO()
    _STATE["stderr"] = (err, sys.stderr)
    try:
        with contextlib.redirect_stderr(err):  # jsonargparse prints usage + error, then exits 2
            cli = PhaseCLI(PhaseModule, TaskDataModule, args=["fit", *(argv or [])],
                           save_config_kwargs={"overwrite": True}, auto_configure_optimizers=False,
                           parser_kwargs={"fit": {"exit_on_error": False}})
    except SystemExit as exit_:
        if exit_.code in (0, None):
            return 0
        return usage_error(_last_error(err.getvalue()))
    except RunDirBusy as e:
        sys.stderr.write(err.getvalue())
        print(f"phasewatch fit: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - usage errors and a full disk become one line
        sys.stderr.write(err.getvalue())
        if _disk_full(e):
            where = PhaseCLI.run_dir or "the run directory"
            print(f"phasewatch fit: error: disk full ({e}); the run is marked failed and its last "
                  f"complete checkpoint is kept. Free space, then continue it with "
                  f"`phasewatch fit --config ... --run.resume {where}`", file=sys.stderr)
            return 1
        if _STATE.get("fitting") or not isinstance(e, (ValueError, TypeError, KeyError,
                                                        argparse.ArgumentError)):
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

"""``phasewatch fit`` runs Lightning with a NullProfiler unless the config names a profiler."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytorch_lightning.profilers import SimpleProfiler

from phasewatch.trainer.cli import PhaseCLI
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule
from phasewatch.trainer.null_profiler import NullProfiler

# PhaseCLI takes its arguments from ``args`` here, as ``phasewatch fit``'s main does
pytestmark = pytest.mark.filterwarnings("ignore:LightningCLI's args parameter")

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")


def fit(root: Path, *extra: str) -> PhaseCLI:
    return PhaseCLI(PhaseModule, TaskDataModule, save_config_kwargs={"overwrite": True},
                    auto_configure_optimizers=False,
                    args=["fit", "--config", CONFIG, "--trainer.max_steps", "3", "--run.wandb", "disabled",
                          "--run.tracking", "false", "--trainer.enable_progress_bar", "false",
                          "--trainer.default_root_dir", str(root), *extra])


def test_fit_uses_the_null_profiler_by_default(tmp_path: Path) -> None:
    cli = fit(tmp_path)
    assert isinstance(cli.trainer.profiler, NullProfiler)
    assert cli.trainer.global_step == 3


def test_a_profiler_the_user_names_is_used(tmp_path: Path) -> None:
    cli = fit(tmp_path, "--trainer.profiler", "simple")
    profiler = cli.trainer.profiler
    assert isinstance(profiler, SimpleProfiler)
    assert len(profiler.recorded_durations["run_training_batch"]) == 3  # one per training step


def test_null_profiler_contexts_nest() -> None:
    profiler = NullProfiler()
    with profiler.profile("outer"), profiler.profile("inner"):
        pass
    with profiler.profile("again"):  # the shared context is reusable after use
        pass
    assert profiler.summary() == ""

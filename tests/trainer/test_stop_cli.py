"""``--run.stop_after_generalization`` ends a run soon after validation accuracy reaches 0.99."""

from __future__ import annotations

from pathlib import Path

from phasewatch.analysis import load_run
from phasewatch.trainer.cli import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")


def test_stop_after_generalization_saves_steps(tmp_path: Path) -> None:
    # frac 0.9 generalizes within a few hundred steps (comprehension, SCIENCE.md config A variant)
    main(["--config", CONFIG, "--data.frac", "0.9", "--run.wandb", "disabled", "--run.tracking", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(tmp_path),
          "--run.stop_after_generalization", "100"])
    run = load_run((tmp_path / "latest").resolve())
    steps, val_acc = run.series("val/acc")
    (generalization,) = [e for e in run.events() if e["name"] == "generalization"]
    t_gen = generalization["step"]
    assert val_acc[steps >= t_gen].min() >= 0.99
    # stops once the event is confirmed (3 more evaluations, 20 steps apart) and 100 steps have passed
    assert t_gen + 100 <= steps[-1] <= t_gen + 100 + 3 * 20
    assert steps[-1] < 4000

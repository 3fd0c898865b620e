"""The run directory: `--run.resume` continues it with no duplicated or missing steps; its meta describes the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import load_run
from phasewatch.trainer.cli import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")
COMMON = ["--config", CONFIG, "--run.wandb", "disabled", "--run.tracking", "false",
          "--trainer.enable_progress_bar", "false", "--run.checkpoint_every", "60"]


@pytest.mark.parametrize("batch", [[], ["--data.batch_size", "256"]], ids=["full", "minibatch"])
def test_resume_continues_the_same_run_directory(tmp_path: Path, batch: list[str], recwarn) -> None:
    """Resumed at step 120, mid-epoch: the same curves as one run to 200 (minibatches too:
    batch g of the run is the same whatever the loader prefetched before the checkpoint);
    the lean step's checkpoints raise no manual-optimization warning."""
    named = [*COMMON, *batch, "--run.name", "grok-a"]  # a "-" in the name: the version follows
    main([*named, "--trainer.default_root_dir", str(tmp_path / "a"), "--trainer.max_steps", "120"])
    (run_dir,) = [p for p in (tmp_path / "a").iterdir() if p.is_dir() and not p.is_symlink()]
    assert run_dir.name.startswith("grok-a-")
    main([*named, "--trainer.default_root_dir", str(tmp_path / "a"), "--trainer.max_steps", "200",
          "--run.resume", str(run_dir)])
    assert load_run(run_dir).meta["run_id"] == run_dir.name
    main([*COMMON, *batch, "--trainer.default_root_dir", str(tmp_path / "b"),
          "--trainer.max_steps", "200"])
    resumed, straight = load_run(run_dir), load_run((tmp_path / "b" / "latest").resolve())
    for name in ("train/loss", "val/acc"):
        steps, values = resumed.series(name)
        ref_steps, ref_values = straight.series(name)
        assert steps.tolist() == list(range(20, 201, 20)) == ref_steps.tolist()
        np.testing.assert_allclose(values, ref_values, rtol=1e-4, atol=1e-6)
    assert len([p for p in (tmp_path / "a").iterdir() if not p.is_symlink()]) == 1
    assert not [w for w in recwarn if "manual optimization" in str(w.message)]


def test_resume_of_a_folder_phasewatch_did_not_name_fails_early(tmp_path: Path, capsys) -> None:
    assert main([*COMMON, "--run.resume", str(tmp_path / "mine")]) == 2
    err = capsys.readouterr().err
    assert "run.resume: 'mine' is not a run id" in err and err.count("\n") == 1
    assert not (tmp_path / "mine").exists()


def test_run_meta_tells_the_analyzer_about_task_and_model(tmp_path: Path) -> None:
    main(["--config", str(Path(CONFIG).with_name("keyvalue_capacity.yaml")), "--run.wandb", "disabled",
          "--run.tracking", "false", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(tmp_path), "--trainer.max_steps", "20"])
    meta = load_run((tmp_path / "latest").resolve()).meta
    assert meta["task/random_targets"] is True and meta["task/n_classes"] == 16
    assert meta["task/out_len"] == 4 and meta["model/n_params"] == 12480

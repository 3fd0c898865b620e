"""One writer per run directory, through the real `phasewatch fit`: a resume while the original
trains is refused (naming its PID) and the original finishes intact; of two concurrent resumes
exactly one runs."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import load_run
from phasewatch.trainer.cli import main as fit_main

from gate import wait_for

HERE = Path(__file__).resolve().parent
CONFIG = str(HERE.parents[1] / "configs" / "modadd_mlp.yaml")
SMALL = ["--run.wandb", "disabled", "--run.tracking", "false", "--run.checkpoint_every", "5",
         "--trainer.val_check_interval", "5", "--trainer.log_every_n_steps", "5",
         "--trainer.enable_progress_bar", "false"]


def _gate_config(tmp_path: Path, name: str, at_step: int) -> tuple[str, Path]:
    go = tmp_path / f"{name}.go"
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text("trainer:\n  callbacks:\n    - class_path: gate.Gate\n"
                   f"      init_args: {{path: '{go}', at_step: {at_step}}}\n")
    return str(cfg), go


def _fit_process(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "phasewatch.analysis.cli", "fit", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _val_steps(run_dir: Path) -> list[int]:
    steps, _ = load_run(run_dir).series("val/acc")
    assert len(np.unique(steps)) == len(steps)
    return steps.tolist()


def test_resume_while_training_is_refused_and_one_of_two_concurrent_resumes_runs(tmp_path, capsys):
    root = tmp_path / "runs"
    gate_cfg, go = _gate_config(tmp_path, "first", at_step=12)
    original = _fit_process("--config", CONFIG, "--config", gate_cfg, "--trainer.max_steps", "20",
                            "--trainer.default_root_dir", str(root), *SMALL)
    wait_for(Path(f"{go}.reached"), original)  # alive, holding the lock, step 12
    (run_dir,) = [p for p in root.iterdir() if p.name != "latest"]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    resume = ["--config", CONFIG, "--run.resume", str(run_dir), *SMALL]
    assert fit_main([*resume, "--trainer.max_steps", "30"]) == 1
    err = capsys.readouterr().err
    assert f"another writer (PID {original.pid})" in err and err.count("\n") == 1, err
    go.touch()
    assert original.wait(timeout=300) == 0, original.stderr.read()[-3000:]
    meta = load_run(run_dir).meta
    assert meta["status"] == "success" and meta["sessions"] == 1  # the refused resume wrote nothing
    assert _val_steps(run_dir) == list(range(5, 21, 5))

    gate_cfg, go = _gate_config(tmp_path, "second", at_step=25)
    winner = _fit_process(*resume, "--config", gate_cfg, "--trainer.max_steps", "30")
    wait_for(Path(f"{go}.reached"), winner)
    assert fit_main([*resume, "--trainer.max_steps", "30"]) == 1  # the concurrent second resume
    assert f"another writer (PID {winner.pid})" in capsys.readouterr().err
    go.touch()
    assert winner.wait(timeout=300) == 0, winner.stderr.read()[-3000:]
    meta = load_run(run_dir).meta
    assert meta["status"] == "success" and meta["sessions"] == 2
    assert _val_steps(run_dir) == list(range(5, 31, 5))  # each step once, none missing


def test_resume_of_a_run_killed_before_its_first_checkpoint_trains_it_again(tmp_path, capsys):
    crash = tmp_path / "crash.yaml"
    crash.write_text("trainer:\n  callbacks:\n    - class_path: gate.Crash\n"
                     "      init_args: {at_step: 7}\n")
    args = ["--config", CONFIG, *SMALL, "--run.checkpoint_every", "50", "--trainer.max_steps", "10"]
    with pytest.raises(RuntimeError, match="simulated crash"):
        fit_main([*args, "--config", str(crash), "--trainer.default_root_dir", str(tmp_path / "runs")])
    (run_dir,) = [p for p in (tmp_path / "runs").iterdir() if p.name != "latest"]
    assert not (run_dir / "checkpoints").exists() and load_run(run_dir).meta["status"] == "failed"
    capsys.readouterr()
    assert fit_main([*args, "--run.resume", str(run_dir)]) == 0
    assert "has no checkpoint yet" in capsys.readouterr().err
    meta = load_run(run_dir).meta
    assert meta["status"] == "success" and meta["sessions"] == 2
    assert _val_steps(run_dir) == [5, 10]
    assert fit_main([*args, "--run.resume", str(tmp_path / "runs" / "nope-20260101-000000-abcd")]) == 2
    assert "holds neither last.ckpt nor trace.sqlite" in capsys.readouterr().err

"""Real small file systems (tmpfs, mounted by the test as root; skipped where not permitted):
a full disk during `phasewatch fit` keeps the last good checkpoint, ends with one line and
status "failed", and the run resumes with each step once; runs on read-only media are read,
never called corrupt, and analyze / report write only where --out says."""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from phasewatch.analysis import TraceWriter, load_run
from phasewatch.analysis.cli import main as cli_main
from phasewatch.trainer.cli import main as fit_main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")
SMALL = ["--run.wandb", "disabled", "--run.tracking", "false", "--run.checkpoint_every", "5",
         "--trainer.val_check_interval", "5", "--trainer.log_every_n_steps", "5",
         "--trainer.enable_progress_bar", "false"]


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a 4 MiB tmpfs; yields ``(mount point, remount(read_only: bool))``."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")

    def remount(read_only: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,{'ro' if read_only else 'rw'}", str(mnt)], check=True)

    try:
        yield mnt, remount
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _val_steps(run_dir: Path) -> list[int]:
    steps, _ = load_run(run_dir).series("val/acc")
    assert len(np.unique(steps)) == len(steps)
    return steps.tolist()


def test_full_disk_keeps_last_checkpoint_fails_in_one_line_and_resumes(tmpfs, tmp_path, capsys):
    mnt, _ = tmpfs
    ballast = mnt / "ballast"
    fill = tmp_path / "fill.yaml"
    fill.write_text("trainer:\n  callbacks:\n    - class_path: gate.FillDisk\n"
                    f"      init_args: {{path: '{ballast}', at_step: 10, leave_bytes: 100000}}\n")
    args = ["--config", CONFIG, *SMALL, "--trainer.max_steps", "20"]
    assert fit_main([*args, "--config", str(fill), "--trainer.default_root_dir", str(mnt)]) == 1
    err = capsys.readouterr().err
    (run_dir,) = [p for p in mnt.iterdir() if p.name not in ("latest", "ballast")]
    assert err.count("\n") == 1 and "disk full" in err and f"--run.resume {run_dir}" in err, err
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert len(ckpts) == 2 and ckpts[0].endswith("-step=5.ckpt") and ckpts[1] == "last.ckpt", ckpts
    assert torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 5
    assert load_run(run_dir).meta["status"] == "failed"

    ballast.unlink()  # space freed: continue the run
    assert fit_main(["--config", CONFIG, *SMALL, "--trainer.max_steps", "20",
                     "--run.resume", str(run_dir)]) == 0
    assert load_run(run_dir).meta["status"] == "success"
    assert _val_steps(run_dir) == [5, 10, 15, 20]
    steps, _ = load_run(run_dir).series("train/loss")
    assert steps.tolist() == [5, 10, 15, 20]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


_KILLED = """
import os, sys
from phasewatch.analysis import TraceWriter
w = TraceWriter(sys.argv[1], flush_every_rows=10)
for s in range(300):
    w.log_scalars({"val/acc": s / 300, "train/acc": 1.0}, step=s)
w.flush()
if sys.argv[2] == "drop-shm":
    os.remove(sys.argv[1] + "/trace.sqlite-shm")
os._exit(0)  # killed: the rows stay in trace.sqlite-wal
"""


def test_runs_on_read_only_media_are_read_and_outputs_go_only_to_out(tmpfs, tmp_path, capsys):
    mnt, remount = tmpfs
    with TraceWriter(mnt / "closed") as w:
        for s in range(300):
            w.log_scalars({"val/acc": s / 300, "train/acc": 1.0}, step=s)
    for name, how in (("killed", "keep-shm"), ("no_shm", "drop-shm")):
        subprocess.run([sys.executable, "-c", _KILLED, str(mnt / name), how], check=True)
    remount(read_only=True)
    before = _digest(mnt)
    for name in ("closed", "killed"):
        steps, values = load_run(mnt / name).series("val/acc")
        assert steps.tolist() == list(range(300)) and values[-1] == 299 / 300
        assert cli_main(["analyze", str(mnt / name)]) == 1
        err = capsys.readouterr().err
        assert "read-only" in err and "--out" in err and "corrupt" not in err
        out = tmp_path / f"out_{name}"
        assert cli_main(["analyze", str(mnt / name), "--out", str(out)]) == 0
        assert (out / "analysis.json").is_file()
        assert cli_main(["report", str(mnt / name), "--out", str(tmp_path / f"rep_{name}")]) == 0
        assert sorted(p.name for p in (tmp_path / f"rep_{name}").iterdir()) == \
            ["analysis.json", "figures", "report.html"]
    assert cli_main(["analyze", str(mnt / "no_shm")]) == 1
    err = capsys.readouterr().err
    assert "copy the run directory to a writable disk" in err and "corrupt" not in err
    assert _digest(mnt) == before
    remount(read_only=False)
    shutil.rmtree(mnt / "closed")

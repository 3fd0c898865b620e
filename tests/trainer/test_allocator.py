"""``phasewatch fit`` keeps the memory a step frees: no page faults per training step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_transformer.yaml")


def fit_page_faults(steps: int, root: Path) -> int:
    """Minor page faults of a whole ``phasewatch fit`` process of config C run for ``steps``."""
    cmd = [sys.executable, "-m", "phasewatch.analysis.cli", "fit", "--config", CONFIG,
           "--trainer.max_steps", str(steps), "--run.tracking", "false", "--run.wandb", "disabled",
           "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", str(root / str(steps))]
    env = {**os.environ, "PHASEWATCH_THREADS": "1", "WANDB_MODE": "disabled"}
    for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_"):
        env.pop(name, None)  # glibc's defaults: what fit itself must change
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()[-2000:]
    return usage.ru_minflt


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_training_steps_do_not_fault_their_memory_in_again(tmp_path: Path) -> None:
    # with glibc's own thresholds config C's steps handed the top of the heap back to the OS and
    # faulted it in again: ~2,300 pages (9 MiB) a step, measured
    extra = fit_page_faults(70, tmp_path) - fit_page_faults(10, tmp_path)
    assert extra / 60 < 200  # 18-19 with the settings, 640-2,300 without (measured)

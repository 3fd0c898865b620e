"""A callback for tests that run ``phasewatch fit`` as a process: it holds training at a step
until a file appears, so a test can act while the run is certainly alive."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl


class Gate(pl.Callback):
    """At ``global_step == at_step``: touch ``<path>.reached``, wait (<= 300 s) for ``path``."""

    def __init__(self, path: str, at_step: int = 1):
        self.path, self.at_step = Path(path), at_step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step != self.at_step:
            return
        Path(f"{self.path}.reached").touch()
        deadline = time.monotonic() + 300
        while not self.path.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def wait_for(path: Path, proc, timeout: float = 300) -> None:
    """Wait until ``path`` exists; fail early with the process's output if it dies first."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"process ended ({proc.returncode}): {proc.stderr.read()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} did not appear within {timeout} s")
        time.sleep(0.05)


class FillDisk(pl.Callback):
    """At ``global_step == at_step``: fill the file system of ``path`` with ``path`` (a ballast
    file) until ``leave_bytes`` stay free, so that the next checkpoint does not fit."""

    def __init__(self, path: str, at_step: int, leave_bytes: int):
        self.path, self.at_step, self.leave_bytes = Path(path), at_step, leave_bytes

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at_step:
            st = os.statvfs(self.path.parent)
            self.path.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - self.leave_bytes))


class Crash(pl.Callback):
    """Raise at ``global_step == at_step`` (a run dying before its first checkpoint)."""

    def __init__(self, at_step: int):
        self.at_step = at_step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step == self.at_step:
            raise RuntimeError("simulated crash")

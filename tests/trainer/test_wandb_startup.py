"""`run.wandb: online` with no reachable server: start-up is bounded, then one warning and no
W&B logger (training goes on with the local trace)."""
from __future__ import annotations

import os
import time
import warnings

from phasewatch.trainer.wandb_logger import STARTUP_TIMEOUT_S, build_wandb_logger


def test_an_offline_run_leaves_the_next_online_run_online(tmp_path, monkeypatch):
    """Lightning's ``offline=True`` sets WANDB_MODE for the whole process; ours must not, or a
    notebook's next ``online`` run is silently offline."""
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = build_wandb_logger(str(tmp_path / "run-0"), name="run-0", mode="offline")
    assert logger is not None and logger.experiment.settings.mode == "offline"
    logger.finalize("success")
    assert "WANDB_MODE" not in os.environ


def test_online_without_a_server_gives_up_within_15_s_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    t0 = time.monotonic()
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        logger = build_wandb_logger(str(tmp_path / "run-1"), name="run-1", mode="online")
    elapsed = time.monotonic() - t0
    assert logger is None
    assert STARTUP_TIMEOUT_S <= 15 and elapsed <= 15, elapsed
    assert sum("W&B could not start" in str(w.message) for w in rec) == 1


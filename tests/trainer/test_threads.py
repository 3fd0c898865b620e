"""The thread policy of `phasewatch fit` and sweep workers; docstring examples of the sweep modules."""

from __future__ import annotations

import doctest
import importlib
import logging
from pathlib import Path

import pytest
import torch

from phasewatch.trainer.cli import main
from phasewatch.trainer.threads import CORES_ENV, ENV, WORK_PER_THREAD, choose_threads, resolve_threads

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")


@pytest.mark.parametrize("name", ["phasewatch.trainer.threads", "phasewatch.trainer.sweep_spec",
                                  "phasewatch.analysis.sweep_state", "phasewatch.analysis.diagram",
                                  "phasewatch.trainer.cli"])
def test_docstring_examples(name) -> None:
    res = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 0


def test_threads_never_exceed_the_free_cores_nor_the_work() -> None:
    for n_params in (10**3, 10**5, 10**7):
        for cores in (1, 2, 8, 64):
            for busy in (0.0, 1.0, 3.0, 100.0):
                n = choose_threads(n_params, 1000, cores, busy)
                assert 1 <= n <= max(1, cores - busy + 0.5) and n <= max(1, n_params * 1000 // WORK_PER_THREAD)
    assert choose_threads(10**7, 1000, 64, 0.0) == 64 and choose_threads(10**7, 1000, 64, 60.0) == 4


def test_an_explicit_choice_wins_in_order(monkeypatch) -> None:
    monkeypatch.setenv(ENV, "3")
    assert resolve_threads(5, 10, 10) == (5, "run.threads")
    assert resolve_threads(None, 10, 10) == (3, ENV)
    monkeypatch.delenv(ENV)
    monkeypatch.setenv(CORES_ENV, "4")  # a sweep worker's share: no other process counts as busy
    n, why = resolve_threads(None, 10**6, 10**3)
    assert n == 4 and "4 cores" in why and "busy" not in why
    n, why = resolve_threads(None, 10**6, 10**3, processes=2)  # two DDP ranks share the host
    assert n == 2 and "2 cores" in why
    monkeypatch.setenv(ENV, "two")
    with pytest.raises(ValueError, match="PHASEWATCH_THREADS must be a whole number >= 1, got 'two'"):
        resolve_threads(None, 10, 10)


def test_fit_sets_and_logs_the_thread_count(tmp_path, monkeypatch, caplog, capsys) -> None:
    monkeypatch.setenv(ENV, "1")
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        with caplog.at_level(logging.INFO):
            main(["--config", CONFIG, "--run.wandb", "disabled", "--run.tracking", "false",
                  "--trainer.enable_progress_bar", "false", "--trainer.max_steps", "2",
                  "--trainer.default_root_dir", str(tmp_path)])
        assert torch.get_num_threads() == 1
        assert "torch threads: 1 (PHASEWATCH_THREADS)" in caplog.text
        capsys.readouterr()
        assert main(["--config", CONFIG, "--run.wandb", "disabled", "--run.threads", "0",
                     "--trainer.default_root_dir", str(tmp_path / "bad")]) == 2
        err = capsys.readouterr().err
        assert "run.threads must be >= 1" in err and err.count("\n") == 1
    finally:
        torch.set_num_threads(before)

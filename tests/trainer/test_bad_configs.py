"""Bad configs fail at start with one line that names the field, exit status 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from phasewatch.trainer.cli import main

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "modadd_mlp.yaml")


@pytest.mark.parametrize("override, message", [
    (["--data.task", "x^y"], "x\\^y"),
    (["--data.task", "x/y", "--data.p", "91"], "p=91"),
    (["--data.frac", "1.5"], "frac"),
    (["--data.frac", "0"], "frac"),
    (["--model.model", "transformer1", "--model.model_kwargs", "{vocab_size: 10}"], "vocab_size=10"),
    (["--model.model", "nope"], "nope"),
    (["--model.loss", "hinge"], "model.loss"),
    (["--run.wandb", "sometimes"], "run.wandb"),
])
def test_bad_config_names_the_field(tmp_path: Path, override: list[str], message: str, capsys) -> None:
    assert main(["--config", CONFIG, "--trainer.default_root_dir", str(tmp_path), "--run.wandb", "disabled",
                 "--trainer.max_steps", "1", *override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(message, err[0]), err
    assert not list(tmp_path.glob("*/trace.sqlite")), "a failed start must not leave a run behind"

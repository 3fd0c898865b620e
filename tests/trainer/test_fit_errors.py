"""``phasewatch fit``: bad options and values are one line and exit 2, with "did you mean"."""
import pytest

from phasewatch.trainer.cli import main

BAD = [
    (["--model.learning_rate", "1e-3"], "did you mean --model.lr?"),
    (["--run.wandb", "ofline"], "run.wandb must be one of"),
    (["--data.task", "x+z"], "'x+z' is not a known task"),
    (["--trainer.max_stepz", "5"], "did you mean --trainer.max_steps?"),
]


@pytest.mark.parametrize("extra, expected", BAD, ids=[a[0] for a, _ in BAD])
def test_bad_fit_input_is_one_line_and_exit_2(extra, expected, tmp_path, capsys):
    argv = ["--config", "configs/modadd_mlp.yaml", "--trainer.max_steps", "2",
            "--trainer.default_root_dir", str(tmp_path), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("phasewatch fit: error:") and expected in err[0], err
    assert not list(tmp_path.glob("*/trace.sqlite"))     # nothing was trained

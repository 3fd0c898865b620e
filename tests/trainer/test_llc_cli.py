"""``phasewatch probe RUN --llc``: the LLC at each weight snapshot of a real (tiny) run, written
into its trace; one-line errors (exit 2) for bad input."""

import json

import numpy as np
import pytest

from phasewatch.analysis import load_run
from phasewatch.analysis.cli import main

CONFIG = """
seed_everything: 0
run: {name: tiny_induction}
trainer:
  max_steps: 20
  val_check_interval: 20
  accelerator: cpu
  devices: 1
  callbacks:
    - class_path: phasewatch.callbacks.WeightSnapshot
      init_args: {cadence: "every:10"}
data:
  task: induction
  batch_size: 32
  task_kwargs: {vocab: 12, length: 10, segment: 3, n_eval: 32}
model:
  model: attn_only
  model_kwargs: {d_model: 16, n_heads: 2, n_layers: 1, layer_norm: true}
  lr: 3.0e-3
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("llc")
    (root / "tiny.yaml").write_text(CONFIG)
    assert main(["fit", "--config", str(root / "tiny.yaml"), "--trainer.default_root_dir", str(root),
                 "--run.tracking", "false", "--run.wandb", "disabled",
                 "--trainer.enable_progress_bar", "false"]) in (0, None)
    return str(next(root.glob("tiny_induction-*")))


def test_llc_at_every_snapshot_is_printed_and_written(run_dir, capsys):
    capsys.readouterr()
    assert main(["probe", run_dir, "--llc", "--steps", "0,20", "--chains", "2", "--draws", "16",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["step"] for r in rows] == [0, 20]
    for r in rows:  # the spread is the sample std of the per-chain values, recomputed here
        assert len(r["chain_values"]) == 2 and np.isfinite(r["llc"])
        assert r["std"] == pytest.approx(np.std(r["chain_values"], ddof=1))
        assert r["llc"] == pytest.approx(np.mean(r["chain_values"]))
    # each row is estimated at its own snapshot: the loss there falls as training goes on
    assert rows[-1]["init_loss"] < rows[0]["init_loss"] - 0.05
    with load_run(run_dir) as trace:
        steps, values = trace.series("llc/lambda_hat")
        assert steps.tolist() == [0, 20]
        np.testing.assert_allclose(values, [r["llc"] for r in rows], rtol=1e-6)
        assert trace.meta["llc/settings"]["chains"] == 2


def test_no_write_prints_the_table_only(run_dir, capsys):
    capsys.readouterr()
    assert main(["probe", run_dir, "--llc", "--steps", "10", "--chains", "2", "--draws", "8",
                 "--no-write"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split()[0] == "10" and len(out) == 3 and "not written" in out[2]
    with load_run(run_dir) as trace:
        assert 10 not in trace.series("llc/lambda_hat")[0].tolist()


@pytest.mark.parametrize("argv, says", [
    (["--steps", "7"], "no snapshot at step(s) [7]"),
    (["--steps", "x"], "comma-separated snapshot steps"),
    (["--chains", "1"], "--chains 1"),
    (["--key-freqs", "3"], "drop it with --llc"),
])
def test_bad_input_is_one_line_exit_2(run_dir, capsys, argv, says):
    capsys.readouterr()
    assert main(["probe", run_dir, "--llc", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1


def test_missing_run_and_run_without_snapshots(tmp_path, capsys, run_dir):
    assert main(["probe", str(tmp_path / "nope"), "--llc"]) == 2
    assert "no such run directory" in capsys.readouterr().err
    import shutil
    bare = tmp_path / "bare"
    shutil.copytree(run_dir, bare, ignore=shutil.ignore_patterns("snapshots"))
    assert main(["probe", str(bare), "--llc"]) == 2
    assert "no weight snapshots" in capsys.readouterr().err

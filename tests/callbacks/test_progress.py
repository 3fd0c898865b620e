"""Nanda et al.'s progress measures with one K (callbacks/progress.py, ``phasewatch probe``).

The final series are checked against an independent numpy computation from the saved weights
(forward pass and Fourier directions built here, Nanda's tensor-product form; its forward runs
in float64, the recompute's in float32 as Nanda's does: on these runs the two differ by < 1e-7
nats, so 1e-6 is the tolerance); the offline
command against the end-of-fit recompute; runs where the measures do not apply against what
they log.
"""

import json
import shutil

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from phasewatch.analysis import load_run
from phasewatch.analysis.cli import main as cli
from phasewatch.analysis.store import TraceWriter
from phasewatch.callbacks import CircuitCheckpoint, FourierProbe
from phasewatch.callbacks.progress import unpack_weights
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule
from phasewatch.trainer.tasks import build_task

from cb_helpers import make_trainer

MAIN = ("circuit/restricted_loss", "circuit/excluded_loss")


def _numpy_losses(w, p, freqs, train_idx):
    """Restricted / excluded loss of the embedding MLP with weights ``w`` (numpy, float64)."""
    a, b = np.divmod(np.arange(p * p), p)
    h = np.concatenate([w["embeds.0.weight"][a], w["embeds.1.weight"][b]], 1).astype(np.float64)
    h = np.maximum(h @ w["hidden.weight"].T.astype(np.float64) + w["hidden.bias"], 0)
    L = h @ w["out.weight"].T.astype(np.float64) + w["out.bias"]
    x = np.arange(p)
    proj = np.zeros_like(L)
    for k in freqs:  # Nanda: u_k = (c (x) c - s (x) s)/sqrt 2, v_k = (s (x) c + c (x) s)/sqrt 2
        c, s = np.cos(2 * np.pi * k * x / p), np.sin(2 * np.pi * k * x / p)
        c, s = c / np.linalg.norm(c), s / np.linalg.norm(s)
        for d in ((np.outer(c, c) - np.outer(s, s)) / np.sqrt(2),
                  (np.outer(s, c) + np.outer(c, s)) / np.sqrt(2)):
            d = d.ravel()
            proj += np.outer(d, d @ L)
    labels = (a + b) % p

    def ce(z, y):
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    restricted = proj + (L - proj).mean(0)
    return ce(restricted, labels), ce((L - proj)[train_idx], labels[train_idx])


def test_final_series_equal_an_independent_numpy_computation(comprehension_run):
    run = load_run(comprehension_run)
    status = run.meta["circuit/progress_measures"]
    k = status["key_freqs"]
    assert status["status"] == "final" and k and k == status["final_model_key_freqs"]
    steps, snaps = run.arrays("circuit/snapshot")
    layout = run.meta["circuit/snapshot_layout"]
    train_idx = build_task("x+y", p=59, frac=0.9, seed=0).train_index.numpy()
    (rs, restricted), (es, excluded) = run.series(MAIN[0]), run.series(MAIN[1])
    assert rs.tolist() == es.tolist() == steps.tolist()  # every probe step
    for i in (0, 5, len(steps) // 2, len(steps) - 1):
        w = {n: t.numpy() for n, t in unpack_weights(snaps[i], layout).items()}
        r, e = _numpy_losses(w, 59, k, train_idx)
        assert restricted[i] == pytest.approx(r, abs=1e-6) and excluded[i] == pytest.approx(e, abs=1e-6)
    # the snapshot at the last step is the final model: K derived from it is the stored K
    ks, masks = run.arrays("circuit/key_freqs")
    assert np.flatnonzero(masks[-1]).tolist() == k and ks[-1] == steps[-1]


def _probe_json(capsys, *args):
    assert cli(["probe", *args, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_probe_offline_equals_end_of_fit_and_any_k_can_be_tried(comprehension_run, tmp_path,
                                                                 capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(comprehension_run, run_dir)
    with load_run(run_dir) as run:  # read now: a RunTrace reads the store at each call
        before = {n: run.series(n) for n in (*MAIN, "circuit/excluded_loss_current_k",
                                             "circuit/restricted_loss_current_k")}
    out = _probe_json(capsys, str(run_dir), "--no-write")
    assert out["k_source"] == "final_model" and out["written"] is False
    for name in MAIN:
        steps, values = before[name]
        assert out[name]["steps"] == steps.tolist()
        np.testing.assert_allclose(out[name]["values"], values, rtol=0, atol=1e-12)
    # another K: a different series, written with k_source "user"; the current-K series stay
    out = _probe_json(capsys, str(run_dir), "--key-freqs", "2, 3")
    after = load_run(run_dir)
    status = after.meta["circuit/progress_measures"]
    assert status["key_freqs"] == [2, 3] and status["k_source"] == "user"
    new = after.series(MAIN[1])[1]
    assert np.abs(new - before[MAIN[1]][1]).max() > 0.1
    np.testing.assert_allclose(new, out[MAIN[1]]["values"], rtol=0, atol=1e-12)
    for name in ("circuit/excluded_loss_current_k", "circuit/restricted_loss_current_k"):
        np.testing.assert_array_equal(after.series(name)[1], before[name][1])


@pytest.mark.parametrize("args, says", [
    (["{run}", "--key-freqs", "0,3"], "out of range 1..29"),
    (["{run}", "--key-freqs", "30"], "out of range 1..29"),
    (["{run}", "--key-freqs", "2,x"], "'x' is not an integer"),
    (["{run}", "--key-freqs", "2.5"], "'2.5' is not an integer"),
    (["{run}", "--key-freqs", "2,,3"], "comma-separated integers"),
    (["{missing}"], "no such run directory"),
    (["{bare}"], "no weight snapshots"),
    (["{foreign}"], "built-in models and tasks"),
])
def test_probe_bad_inputs_give_one_line_and_exit_2(comprehension_run, tmp_path, capsys, args,
                                                   says):
    for name in ("bare", "foreign"):  # a built-in run without snapshots; a user's model
        with TraceWriter(tmp_path / name) as w:
            w.log_scalars({"train/loss": 1.0}, 0)
            if name == "bare":
                w.set_meta("hparams", {"model": "embedding_mlp", "task": "x+y", "p": 11})
    paths = {"run": comprehension_run, "missing": str(tmp_path / "nope"),
             "bare": str(tmp_path / "bare"), "foreign": str(tmp_path / "foreign")}
    assert cli(["probe", *[a.format(**paths) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("phasewatch probe: error: ") and says in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def _fit(tmp_path, model, loss, steps, callbacks=(), p=13):
    dm = TaskDataModule("x+y", p=p, frac=0.5, steps_per_epoch=steps)
    module = PhaseModule(dm.task, model=model, lr=1e-2, loss=loss)
    cc = CircuitCheckpoint([FourierProbe()], cadence="every:4", on_error="raise")
    trainer = make_trainer(tmp_path, [cc, *callbacks], max_steps=steps, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    return trainer, cc


def test_mse_model_logs_no_restricted_or_excluded_loss_and_says_why(tmp_path, capsys):
    with pytest.warns(UserWarning, match="no restricted / excluded loss logged.*'mse'") as rec:
        trainer, _ = _fit(tmp_path, "quadratic_mlp", "mse", steps=8)
    assert sum("restricted / excluded" in str(w.message) for w in rec) == 1  # one line per run
    run = load_run(trainer.logger.log_dir)
    assert not [n for n in run.names() if "restricted" in n or "excluded" in n]
    assert "circuit/snapshot" not in run.array_names()
    status = run.meta["circuit/progress_measures"]
    assert status["status"] == "not_applicable" and "'mse'" in status["reason"]
    assert run.series("circuit/gini")[0].tolist() == [0, 4, 8]  # the other measures still run
    assert cli(["probe", trainer.logger.log_dir]) == 2
    assert "do not apply" in capsys.readouterr().err


def test_final_model_without_key_frequencies_drops_the_main_series(tmp_path):
    trainer, cc = _fit(tmp_path, "embedding_mlp", "cross_entropy", steps=6)  # 6 steps: no circuit
    run = load_run(trainer.logger.log_dir)
    status = run.meta["circuit/progress_measures"]
    assert status["status"] == "not_applicable" and "no key frequencies" in status["reason"]
    assert not set(MAIN) & set(run.names())
    # the last step (6) was probed too: the final model is where K comes from
    assert run.series("circuit/excluded_loss_current_k")[0].tolist() == [0, 4, 6]
    assert run.arrays("circuit/key_freqs")[1][-1].sum() == 0 and cc.final["fourier"].drop


class _Crash(pl.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == 9:
            raise RuntimeError("simulated crash")


def test_crashed_run_stays_provisional_and_probe_completes_it(tmp_path, capsys):
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer, _ = _fit(tmp_path, "embedding_mlp", "cross_entropy", steps=20,
                          callbacks=[_Crash()])
    run_dir = next((tmp_path / "runs").glob("t-*"))
    run = load_run(run_dir)
    status = run.meta["circuit/progress_measures"]
    assert status["status"] == "provisional" and status["k_source"] == "current_checkpoint"
    live = run.series(MAIN[0])
    assert live[0].tolist() == [0, 4, 8]  # the live values: those of the per-checkpoint K
    np.testing.assert_array_equal(live[1], run.series("circuit/restricted_loss_current_k")[1])
    out = _probe_json(capsys, str(run_dir), "--key-freqs", "1,2")
    run = load_run(run_dir)
    assert run.meta["circuit/progress_measures"]["status"] == "final"
    assert run.series(MAIN[0])[0].tolist() == [0, 4, 8]
    np.testing.assert_allclose(run.series(MAIN[0])[1], out[MAIN[0]]["values"], atol=1e-12)
    assert not np.allclose(run.series(MAIN[0])[1], live[1], atol=1e-4)

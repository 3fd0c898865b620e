"""Resume: crash after the checkpoint at step S, resume from it in the same run dir; the trace
(scalars, arrays, snapshots) equals an uninterrupted run's: callback state restored, no
duplicates, no gaps."""

import numpy as np
import pytest
import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint

from phasewatch.analysis import load_run
from phasewatch.callbacks import (CircuitCheckpoint, ExampleTracker, GradientMonitor, ProbeResult,
                                  TraceLogger, WeightNormMonitor, WeightSnapshot, list_snapshots)

from cb_helpers import UserModule, full_batch_loader, modular_data

S, T = 8, 14


class CountingProbe:
    name = "count"

    def __call__(self, model, ctx):
        ctx.state["n"] = ctx.state.get("n", 0) + 1
        return ProbeResult({"user/calls": float(ctx.state["n"])})


class Crash(pl.Callback):
    def on_train_batch_end(self, trainer, *a):
        if trainer.global_step == S + 5:  # after a snapshot at 12: resume must redo it
            raise RuntimeError("simulated crash")


def _callbacks():
    return [WeightNormMonitor("every:2"), GradientMonitor("log:20,max:3"),
            ExampleTracker("every:3"), CircuitCheckpoint([CountingProbe()], cadence="every:2"),
            WeightSnapshot("every:4")]


def _trainer(root, version, extra, max_steps, ckpt_dir=None):
    cbs = _callbacks() + extra
    if ckpt_dir is not None:
        cbs.append(ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=S, save_top_k=-1))
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, callbacks=cbs,
                      logger=TraceLogger(str(root), name=None, version=version),
                      enable_progress_bar=False, enable_model_summary=False,
                      enable_checkpointing=ckpt_dir is not None, num_sanity_val_steps=0)


def test_resume_trace_equals_uninterrupted(tmp_path):
    (tx, ty), _ = modular_data()
    pl.seed_everything(0)
    ref = _trainer(tmp_path, "ref", [], T)
    ref.fit(UserModule(), full_batch_loader(tx, ty))

    pl.seed_everything(0)
    ckpt = tmp_path / "ckpt"
    first = _trainer(tmp_path, "res", [Crash()], T, ckpt_dir=ckpt)
    with pytest.raises(RuntimeError, match="simulated crash"):
        first.fit(UserModule(), full_batch_loader(tx, ty))
    path = next(ckpt.glob(f"*step={S}*.ckpt"))
    second = _trainer(tmp_path, "res", [], T, ckpt_dir=ckpt)
    second.fit(UserModule(), full_batch_loader(tx, ty), ckpt_path=str(path))

    assert second.logger.log_dir == first.logger.log_dir
    a, b = load_run(ref.logger.log_dir), load_run(second.logger.log_dir)
    assert set(a.names()) == set(b.names()) and "grads/cos_prev" in a.names()
    for name in a.names():
        sa, va = a.series(name)
        sb, vb = b.series(name)
        assert sa.tolist() == sb.tolist(), name
        np.testing.assert_allclose(vb, va, rtol=1e-5, atol=1e-7, err_msg=name)
    assert a.series("user/calls")[1].tolist() == list(range(1, T // 2 + 2))
    assert set(a.array_names()) == set(b.array_names())
    for name in a.array_names():
        sa, xa = a.arrays(name)
        sb, xb = b.arrays(name)
        assert sa.tolist() == sb.tolist(), name
        np.testing.assert_allclose(xb.astype(float), xa.astype(float), rtol=1e-3, atol=1e-3, err_msg=name)
    # Toneva counts and cartography survive the resume (callback state in the checkpoint)
    np.testing.assert_array_equal(b.array("examples/train/forgetting", T), a.array("examples/train/forgetting", T))
    assert list_snapshots(a.path)[0] == list_snapshots(b.path)[0] == [0, 4, 8, 12]

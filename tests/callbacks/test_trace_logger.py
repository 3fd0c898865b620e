"""TraceLogger with a real Lightning run on CPU: what Lightning logs is read back at the right steps."""
from __future__ import annotations

import os

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities.rank_zero import rank_zero_only
from torch.utils.data import DataLoader, TensorDataset

from phasewatch.analysis import load_run
from phasewatch.callbacks.trace_logger import (TraceLogger, find_trace_logger, log_array, log_scalars,
                                           split_run_id)


class LinReg(pl.LightningModule):
    """y = x @ w + noise, full batch; records the losses it logs to compare with the trace."""

    def __init__(self, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        self.lin = torch.nn.Linear(4, 1)
        self.train_losses: list[float] = []
        self.val_losses: list[float] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.train_losses.append(loss.item())
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.val_losses.append(loss.item())
        self.log("val/loss", loss)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def loaders(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=g)
    return (DataLoader(TensorDataset(x[:48], y[:48]), batch_size=48),
            DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16))


class GlobalStepProbe(Callback):
    """Logs through the helpers at trainer.global_step, like phasewatch's callbacks."""

    def on_validation_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        log_scalars(trainer, {"probe/w_norm": pl_module.lin.weight.norm()})
        log_array(trainer, "probe/w", pl_module.lin.weight.detach())


def fit(tmp_path, max_steps=200, **kw):
    torch.manual_seed(0)
    logger = TraceLogger(root_dir=tmp_path / "runs", name="lin", flush_every_rows=50)
    model = LinReg()
    trainer = pl.Trainer(max_steps=max_steps, accelerator="cpu", logger=logger,
                         callbacks=[GlobalStepProbe(), *kw.pop("callbacks", [])],
                         val_check_interval=10, check_val_every_n_epoch=None, log_every_n_steps=1,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, **kw)
    train, val = loaders()
    trainer.fit(model, train, val)
    return trainer, logger, model


def test_lightning_run_reads_back_with_lightning_steps(tmp_path):
    trainer, logger, model = fit(tmp_path, enable_checkpointing=False)
    assert trainer.global_step == 200
    run_dir = tmp_path / "runs" / logger.run_id
    assert logger.log_dir == str(run_dir) and trainer.log_dir == str(run_dir)
    assert logger.run_id.startswith("lin-") and len(logger.run_version) == len("20261127-021700-ab12")
    assert split_run_id(f"my-{logger.run_id}") == ("my-lin", logger.run_version)
    assert os.readlink(tmp_path / "runs" / "latest") == logger.run_id
    run = load_run(tmp_path / "runs" / "latest")
    assert {"train/loss", "val/loss", "epoch", "probe/w_norm"} <= set(run.names())
    # Lightning logs self.log values at global_step - 1: batch k (0-based) -> step k
    steps, values = run.series("train/loss")
    assert steps.tolist() == list(range(200))
    np.testing.assert_allclose(values, model.train_losses, rtol=1e-6)
    # validation after global_step 10, 20, ..., 200 -> logged at 9, 19, ..., 199
    steps, values = run.series("val/loss")
    assert steps.tolist() == list(range(9, 200, 10))
    np.testing.assert_allclose(values, model.val_losses, rtol=1e-6)
    assert values[-1] < 0.1 * values[0]
    # the helpers log at trainer.global_step
    steps, norms = run.series("probe/w_norm")
    assert steps.tolist() == list(range(10, 201, 10))
    s, w = run.arrays("probe/w")
    assert s.tolist() == list(range(10, 201, 10)) and w.shape == (20, 1, 4)
    np.testing.assert_allclose(np.linalg.norm(w[:, 0], axis=1), norms, rtol=1e-5)
    np.testing.assert_allclose(w[-1, 0], model.lin.weight.detach().numpy()[0], rtol=1e-6)
    meta = run.meta
    assert meta["status"] == "success" and meta["hparams"] == {"lr": 0.05}
    assert meta["run_id"] == logger.run_id
    assert (run_dir / "hparams.yaml").read_text().strip() == "lr: 0.05"
    assert logger.store is not None and find_trace_logger(trainer) is logger
    logger.store.flush()  # reopened after finalize (e.g. to read or for trainer.test)
    assert load_run(run_dir).meta["status"] == "success"


def test_default_checkpoints_land_in_run_dir_and_are_flushed(tmp_path):
    ckpt = ModelCheckpoint(every_n_train_steps=25, save_top_k=-1)
    trainer, logger, _ = fit(tmp_path, max_steps=50, callbacks=[ckpt])
    ckpts = sorted(p.name for p in (tmp_path / "runs" / logger.run_id / "checkpoints").iterdir())
    assert ckpts == ["epoch=24-step=25.ckpt", "epoch=49-step=50.ckpt"]
    meta = load_run(logger.log_dir).meta
    assert meta["last_checkpoint"]["step"] == 50


def test_resume_run_dir_by_version_and_status_failed(tmp_path):
    class Boom(Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 30:
                raise RuntimeError("boom")

    torch.manual_seed(0)
    logger = TraceLogger(root_dir=tmp_path, name="x", version="v1")
    trainer = pl.Trainer(max_steps=100, accelerator="cpu", logger=logger, callbacks=[Boom()],
                         log_every_n_steps=1, enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, limit_val_batches=0)
    train, _ = loaders()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(LinReg(), train)
    run = load_run(tmp_path / "x-v1")
    assert run.meta["status"] == "failed"
    assert run.series("train/loss")[0].tolist() == list(range(29))  # batch 30 raised before logging
    # a second logger with the same version writes into the same run dir (resume)
    again = TraceLogger(root_dir=tmp_path, name="x", version="v1")
    again.log_metrics({"train/loss": torch.tensor(7.0)}, step=10)
    again.finalize("success")
    steps, values = load_run(tmp_path / "x-v1").series("train/loss")
    assert steps.tolist() == list(range(11)) and values[-1] == 7.0


def test_non_zero_rank_writes_nothing(tmp_path):
    logger = TraceLogger(root_dir=tmp_path, name="r", version="1")
    old = rank_zero_only.rank
    rank_zero_only.rank = 1
    try:
        assert logger.store is None
        logger.log_metrics({"a": 1.0}, step=1)
        logger.log_hyperparams({"lr": 1})
        logger.finalize("success")
    finally:
        rank_zero_only.rank = old
    assert not (tmp_path / "r-1").exists()


def test_bad_arguments_name_the_value(tmp_path):
    with pytest.raises(ValueError, match="'a/b'"):
        TraceLogger(root_dir=tmp_path, name="a/b")
    with pytest.raises(ValueError, match="flush_every_rows"):
        TraceLogger(root_dir=tmp_path, flush_every_rows=0)

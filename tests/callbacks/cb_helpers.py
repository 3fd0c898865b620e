"""Shared pieces for the callback tests (imported as `cb_helpers`; unique name on purpose): a user's own LightningModule (not phasewatch's) and a
trainer factory that records with the real TraceLogger when it is available."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class UserModule(pl.LightningModule):
    """A plain user module: token embedding MLP on [a, b] -> (a + b) mod p; forward gives logits."""

    def __init__(self, p: int = 11, d: int = 8, hidden: int = 16, lr: float = 1e-2):
        super().__init__()
        self.p, self.lr = p, lr
        self.emb = nn.Embedding(p, d)
        self.net = nn.Sequential(nn.Linear(2 * d, hidden), nn.ReLU(), nn.Linear(hidden, p))

    def forward(self, x):
        return self.net(self.emb(x).flatten(1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=0.1)


def modular_data(p: int = 11, frac: float = 0.5, seed: int = 0):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    x = torch.stack([a.flatten(), b.flatten()], 1)
    y = (x[:, 0] + x[:, 1]) % p
    perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
    n = int(frac * p * p)
    return (x[perm[:n]], y[perm[:n]]), (x[perm[n:]], y[perm[n:]])


def full_batch_loader(x, y):
    return DataLoader(TensorDataset(x, y), batch_size=len(x), shuffle=False)


def make_trainer(tmp_path, callbacks, max_steps=20, **kw):
    from phasewatch.callbacks.trace_logger import TraceLogger
    logger = TraceLogger(root_dir=str(tmp_path / "runs"), name="t")
    kw.setdefault("enable_checkpointing", False)
    return pl.Trainer(max_steps=max_steps, accelerator="cpu", devices=1, logger=logger,
                      callbacks=callbacks, enable_progress_bar=False,
                      enable_model_summary=False, num_sanity_val_steps=0, **kw)


def read_run(trainer):
    from phasewatch.analysis import load_run
    trainer.logger.store.flush()
    return load_run(trainer.logger.log_dir)


def grok_run(root, steps, frac, every):
    """Config A's embedding MLP (p=59, lr 3e-3, wd 1, full batch) at training fraction ``frac``
    for ``steps`` steps, probed and evaluated every ``every`` steps; returns the run directory."""
    import pytorch_lightning as pl

    from phasewatch.callbacks import (CircuitCheckpoint, ExampleTracker, FourierProbe, TraceLogger,
                                      WeightNormMonitor)
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: one thread is faster, and immune to busy neighbours
    try:
        torch.manual_seed(0)
        torch.set_flush_denormal(True)
        dm = TaskDataModule("x+y", p=59, frac=frac, seed=0, steps_per_epoch=steps)
        module = PhaseModule(dm.task, model="embedding_mlp", lr=3e-3, weight_decay=1.0)
        cad = f"every:{every}"
        cbs = [WeightNormMonitor(cad), ExampleTracker(cad),
               CircuitCheckpoint([FourierProbe()], cadence=cad, on_error="raise")]
        trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, callbacks=cbs,
                             logger=TraceLogger(str(root), name="grok"), limit_val_batches=0,
                             enable_progress_bar=False, enable_model_summary=False,
                             enable_checkpointing=False)
        trainer.fit(module, datamodule=dm)
        return trainer.logger.log_dir
    finally:
        torch.set_num_threads(threads)

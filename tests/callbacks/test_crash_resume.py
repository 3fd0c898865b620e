"""SIGKILL a real training process, then resume it from its checkpoint in the same run dir: the
trace must equal an uninterrupted run's (each logged step once, no gaps, same values).

Around a checkpoint at global_step K (ModelCheckpoint(every_n_train_steps=K) saves in
on_train_batch_end, here aligned with validation every 10 steps) the dead process logs, AFTER
the save: train/loss@K-1, val/loss@K-1, probe/val_norm@K (+ array). The resumed process redoes
neither batch K nor validation at K, so those rows survive only if the dead process flushed
them; its first rows are probe/step_norm@K+1 and train/loss@K. The store keeps rows <= the new
session's first step and supersedes the rest (phasewatch.analysis.store docstring).
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from phasewatch.analysis import TraceStoreError, load_run
from phasewatch.callbacks.trace_logger import TraceLogger, log_array, log_scalars

class LinReg(pl.LightningModule):
    """Full-batch linear regression (deterministic on CPU)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.log("train/loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", torch.nn.functional.mse_loss(self.lin(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


class Probe(Callback):
    """Logs like phasewatch's callbacks, at trainer.global_step; sleeps to slow the run down."""

    def __init__(self, sleep_s: float):
        self.sleep_s = sleep_s

    def on_train_batch_end(self, trainer, pl_module, *args):
        log_scalars(trainer, {"probe/step_norm": pl_module.lin.weight.norm()})
        time.sleep(self.sleep_s)

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            log_scalars(trainer, {"probe/val_norm": pl_module.lin.weight.norm()})
            log_array(trainer, "probe/w", pl_module.lin.weight.detach())


def train(root, version: str, ckpt: str | None = None, sleep_s: float = 0.0) -> None:
    """One training process: TraceLogger + ModelCheckpoint every 20 steps into the run dir."""
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(64, 1, generator=g)
    logger = TraceLogger(root_dir=root, name="crash", version=version, flush_every_rows=10,
                         flush_every_s=0.05)
    ck = ModelCheckpoint(dirpath=os.path.join(logger.log_dir, "checkpoints"), every_n_train_steps=20,
                         save_last=True, save_top_k=-1)
    trainer = pl.Trainer(max_steps=MAX_STEPS, accelerator="cpu", logger=logger,
                         callbacks=[Probe(sleep_s), ck], val_check_interval=10,
                         check_val_every_n_epoch=None, log_every_n_steps=1, num_sanity_val_steps=0,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(LinReg(), DataLoader(TensorDataset(x[:48], y[:48]), batch_size=48),
                DataLoader(TensorDataset(x[48:], y[48:]), batch_size=16), ckpt_path=ckpt)


MAX_STEPS = 200


def _start(root, version, ckpt=None, sleep_s=0.0):
    """A separate OS process (forked: it inherits the imports, saving ~5-15 s of start-up)."""
    proc = mp.get_context("fork").Process(target=train, args=(root, version, ckpt, sleep_s))
    proc.start()
    return proc


def _max_step(run_dir, name="train/loss"):
    try:
        with load_run(run_dir) as run:
            return int(run.series(name)[0][-1]) if name in run.names() else -1
    except TraceStoreError:  # not created yet
        return -1


def _trace(run_dir):
    with load_run(run_dir) as run:
        scalars = {n: run.series(n) for n in run.names()}
        arrays = {n: run.arrays(n) for n in run.array_names()}
    return scalars, arrays


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path):
    ref = _start(tmp_path / "ref", "a")
    crash = _start(tmp_path / "runs", "b", sleep_s=0.02)
    run_dir = tmp_path / "runs" / "crash-b"
    try:
        deadline = time.monotonic() + 60
        while _max_step(run_dir) < 75:
            assert crash.is_alive(), f"training process ended early: exit code {crash.exitcode}"
            assert time.monotonic() < deadline, "training process made no progress"
            time.sleep(0.02)
        os.kill(crash.pid, signal.SIGKILL)
        crash.join(timeout=30)
        assert crash.exitcode == -signal.SIGKILL
        ref.join(timeout=120)
        assert ref.exitcode == 0
    finally:
        for p in (ref, crash):
            if p.is_alive():
                p.kill()
                p.join()
    ref_scalars, ref_arrays = _trace(tmp_path / "ref" / "crash-a")
    assert ref_scalars["train/loss"][0].tolist() == list(range(MAX_STEPS))
    assert ref_scalars["val/loss"][0].tolist() == list(range(9, MAX_STEPS, 10))
    assert ref_scalars["probe/val_norm"][0].tolist() == list(range(10, MAX_STEPS + 1, 10))

    # 1. the killed store opens and holds a gap-free prefix of the reference trace: only the
    #    last flush window (<= 10 rows / 0.05 s here) is lost, never the file
    killed, killed_arrays = _trace(run_dir)
    assert load_run(run_dir).meta["status"] == "running"
    for name, (steps, values) in killed.items():
        ref_steps, ref_values = ref_scalars[name]
        assert steps.tolist() == ref_steps[: len(steps)].tolist(), name
        np.testing.assert_allclose(values, ref_values[: len(steps)], rtol=1e-6, err_msg=name)
    last_flushed = int(killed["train/loss"][0][-1])
    assert last_flushed >= 75

    # 2. resume from the newest checkpoint whose post-save rows (train/loss@K-1, val@K-1,
    #    probe/val_norm@K) were flushed: that holds once train/loss@K is in the store. It is
    #    last.ckpt unless the kill landed inside the flush window right after a save.
    ckpts = sorted(int(p.stem.split("step=")[1]) for p in (run_dir / "checkpoints").glob("*step=*.ckpt"))
    resume_step = max(k for k in ckpts if k <= last_flushed)
    assert resume_step >= 60
    ckpt = next((run_dir / "checkpoints").glob(f"*step={resume_step}.ckpt"))
    resumed = _start(tmp_path / "runs", "b", ckpt=str(ckpt))
    resumed.join(timeout=120)
    assert resumed.exitcode == 0

    # 3. the final trace equals the uninterrupted run's: every step once, no gaps, same values
    final, final_arrays = _trace(run_dir)
    assert sorted(final) == sorted(ref_scalars)
    for name, (ref_steps, ref_values) in ref_scalars.items():
        steps, values = final[name]
        assert steps.tolist() == ref_steps.tolist(), name
        np.testing.assert_allclose(values, ref_values, rtol=1e-6, err_msg=name)
    assert sorted(final_arrays) == sorted(ref_arrays) == ["probe/w"]
    assert final_arrays["probe/w"][0].tolist() == ref_arrays["probe/w"][0].tolist()
    np.testing.assert_allclose(final_arrays["probe/w"][1], ref_arrays["probe/w"][1], rtol=1e-6)
    meta = load_run(run_dir).meta
    assert meta["status"] == "success" and meta["sessions"] == 2
    assert meta["last_checkpoint"]["step"] == MAX_STEPS
    # the dead process had logged past the checkpoint: its later rows were superseded
    assert last_flushed > resume_step


@pytest.mark.parametrize("first", ["train", "probe"])
def test_supersede_rule_matches_lightning_order(tmp_path, first):
    """The store-level replay of the log order above, for both possible first rows of a resume."""
    from phasewatch.analysis import TraceWriter

    K = 20
    with TraceWriter(tmp_path) as w:  # dead process: checkpoint at K, then killed after step 25
        for k in range(1, 27):
            w.log_scalars({"probe/step_norm": k}, k)        # on_train_batch_end
            # (checkpoint at global_step K saved here)
            w.log_scalars({"train/loss": k - 1}, k - 1)      # Lightning: global_step - 1
            if k % 10 == 0:
                w.log_scalars({"val/loss": k - 1}, k - 1)
                w.log_scalars({"probe/val_norm": k}, k)
    with TraceWriter(tmp_path, supersede=True) as w:  # resumed from K: batch K+1 on, no val at K
        for k in range(K + 1, 31):
            if first == "probe":
                w.log_scalars({"probe/step_norm": k}, k)
            w.log_scalars({"train/loss": k - 1}, k - 1)
            if k % 10 == 0:
                w.log_scalars({"val/loss": k - 1}, k - 1)
                w.log_scalars({"probe/val_norm": k}, k)
    run = load_run(tmp_path)
    assert run.series("train/loss")[0].tolist() == list(range(30))
    assert run.series("val/loss")[0].tolist() == [9, 19, 29]
    assert run.series("probe/val_norm")[0].tolist() == [10, 20, 30]
    expected = list(range(1, 31)) if first == "probe" else list(range(1, K + 1))
    assert run.series("probe/step_norm")[0].tolist() == expected

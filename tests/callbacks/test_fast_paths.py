"""The faster paths write the same trace as the plain ones: routine flushes on the writer thread
(``BackgroundTraceWriter``) vs in the training thread (``TraceWriter``), and PhaseModule's lean
step vs Lightning's automatic optimization. Every scalar series, array payload and event of a
real short run with the default callbacks (and a checkpoint) is compared."""
from __future__ import annotations

import gc
import sqlite3
import threading
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from phasewatch.analysis import load_run
from phasewatch.analysis.store_background import BackgroundTraceWriter
from phasewatch.callbacks import default_callbacks
from phasewatch.callbacks.trace_logger import TraceLogger
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule

STEPS = 120


def _fit(root, name: str, background: bool, lean_step: bool):
    torch.manual_seed(0)
    dm = TaskDataModule("x+y", p=23, frac=0.5, steps_per_epoch=STEPS)
    module = PhaseModule(dm.task, model="embedding_mlp", lr=3e-3, lean_step=lean_step)
    logger = TraceLogger(root, name=name, version="v", flush_every_rows=40, background=background)
    checkpoint = ModelCheckpoint(dirpath=root / name / "ckpt", every_n_train_steps=50, save_last=True)
    trainer = pl.Trainer(max_steps=STEPS, accelerator="cpu", devices=1, logger=logger,
                         callbacks=[checkpoint] + default_callbacks(), val_check_interval=10,
                         check_val_every_n_epoch=None, log_every_n_steps=10,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0)
    trainer.fit(module, dm)
    return load_run(logger.log_dir)


def _assert_same_trace(a, b) -> None:
    assert a.names() == b.names() and len(a.names()) > 20
    for name in a.names():
        (sa, va), (sb, vb) = a.series(name), b.series(name)
        np.testing.assert_array_equal(sa, sb, err_msg=name)
        np.testing.assert_array_equal(va, vb, err_msg=name)
    assert a.array_names() == b.array_names() and len(a.array_names()) > 5
    for name in a.array_names():
        (sa, xa), (sb, xb) = a.arrays(name), b.arrays(name)
        np.testing.assert_array_equal(sa, sb, err_msg=name)
        assert len(xa) == len(xb)
        for pa, pb in zip(xa, xb):
            assert pa.dtype == pb.dtype
            np.testing.assert_array_equal(pa, pb, err_msg=name)
    assert a.events() == b.events()
    for key in ("status", "phasewatch", "task/n_train"):
        assert a.meta[key] == b.meta[key], key
    assert a.meta["last_checkpoint"]["step"] == b.meta["last_checkpoint"]["step"] == 100


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The plain paths: flushes in the training thread, Lightning's automatic optimization."""
    return _fit(tmp_path_factory.mktemp("ref"), "plain", background=False, lean_step=False)


def test_background_writer_writes_the_same_trace(reference, tmp_path):
    _assert_same_trace(_fit(tmp_path, "bg", background=True, lean_step=False), reference)


def test_lean_step_writes_the_same_trace(reference, tmp_path):
    _assert_same_trace(_fit(tmp_path, "lean", background=True, lean_step=True), reference)


def test_routine_flushes_run_on_the_writer_thread(tmp_path, monkeypatch):
    threads = []
    real = BackgroundTraceWriter._write_batch

    def spy(self, batch, db):
        threads.append(threading.current_thread().name)
        return real(self, batch, db)

    monkeypatch.setattr(BackgroundTraceWriter, "_write_batch", spy)
    with BackgroundTraceWriter(tmp_path, flush_every_rows=10) as w:
        for step in range(100):
            w.log_scalars({"a": step, "b": -step}, step)
        w.log_scalars({"c": 1.0}, 99)
        w.flush()  # explicit: in the calling thread, after the batch in flight
        assert threads[-1] == threading.current_thread().name
    assert sum(t.startswith("phasewatch-trace-writer") for t in threads) >= 9
    steps, values = load_run(tmp_path).series("b")
    assert steps.tolist() == list(range(100)) and values.tolist() == [-s for s in range(100)]


def test_failed_background_flush_warns_once_and_keeps_the_rows(tmp_path):
    w = BackgroundTraceWriter(tmp_path, flush_every_rows=5)
    w.log_scalars({"a": 0.0}, 0)
    w.flush()
    w._conn.execute("PRAGMA busy_timeout=20")  # fail fast instead of waiting 30 s for the lock
    blocker = sqlite3.connect(tmp_path / "trace.sqlite", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(1, 40):  # several flushes come due and fail in the background
            w.log_scalars({"a": float(step)}, step)
            w._inflight and w._inflight[0].exception()  # let each attempt finish
    blocker.execute("ROLLBACK")
    blocker.close()
    ours = [c for c in caught if "in the background failed" in str(c.message)]
    assert len(ours) == 1 and "database is locked" in str(ours[0].message)
    w.close()
    steps, values = load_run(tmp_path).series("a")
    assert steps.tolist() == list(range(40)) and values.tolist() == [float(s) for s in range(40)]


@pytest.mark.parametrize("first, then", [(False, True), (True, False)])
def test_resume_across_step_modes_continues_at_the_checkpoint_step(tmp_path, first, then):
    """A checkpoint of one optimization mode (e.g. written before lean_step existed) resumes in
    the other at its own step, and the loss goes on from there."""
    dm = TaskDataModule("x+y", p=11, frac=0.5, steps_per_epoch=30)

    def fit(lean: bool, steps: int, ckpt_path=None) -> pl.Trainer:
        torch.manual_seed(0)
        module = PhaseModule(dm.task, model="embedding_mlp", lr=3e-3, lean_step=lean)
        trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1, logger=False,
                             callbacks=[ModelCheckpoint(dirpath=tmp_path, save_last=True)],
                             val_check_interval=10, check_val_every_n_epoch=None,
                             enable_progress_bar=False, enable_model_summary=False,
                             num_sanity_val_steps=0)
        trainer.fit(module, dm, ckpt_path=ckpt_path)
        return trainer

    fit(first, 20)
    resumed = fit(then, 30, ckpt_path=tmp_path / "last.ckpt")
    assert resumed.global_step == 30
    straight = fit(first, 30)
    assert torch.equal(resumed.callback_metrics["train/loss"], straight.callback_metrics["train/loss"])


def test_objects_alive_at_train_start_are_frozen_during_training_only():
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append(gc.get_freeze_count())

    dm = TaskDataModule("x+y", p=11, frac=0.5, steps_per_epoch=3)
    module = PhaseModule(dm.task, model="embedding_mlp")
    assert gc.get_freeze_count() == 0
    pl.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, callbacks=[Probe()],
               enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
               num_sanity_val_steps=0, limit_val_batches=0).fit(module, dm)
    assert len(seen) == 3 and min(seen) > 10_000  # torch, Lightning, the model ...
    assert gc.get_freeze_count() == 0  # handed back to the collector at teardown

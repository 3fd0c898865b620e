"""ExampleTracker: per-example arrays read back and checked against a direct evaluation."""

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from phasewatch.callbacks import ExampleTracker
from phasewatch.trainer.module import PhaseModule
from phasewatch.trainer.data import TaskDataModule

from cb_helpers import UserModule, full_batch_loader, make_trainer, modular_data, read_run


class Final(pl.Callback):
    def on_train_end(self, trainer, pl_module):
        self.state = copy.deepcopy(pl_module.state_dict())


def test_user_module_arrays_match_direct_evaluation(tmp_path):
    (tx, ty), (vx, vy) = modular_data()
    corrupted = torch.zeros(len(ty), dtype=torch.bool)
    corrupted[::7] = True
    assigned = torch.where(corrupted, (ty + 1) % 11, ty)
    cb = ExampleTracker(cadence="every:10", train=(tx, assigned), val=(vx, vy),
                        train_true_y=ty, train_corrupted=corrupted)
    fin = Final()
    trainer = make_trainer(tmp_path, [cb, fin], max_steps=60)
    trainer.fit(UserModule(), full_batch_loader(tx, assigned))
    run = read_run(trainer)
    steps, correct = run.arrays("examples/train/correct")
    assert steps.tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert correct.dtype == np.uint8 and correct.shape == (7, len(tx))
    assert run.arrays("examples/train/loss")[1].dtype == np.float16
    m = UserModule()
    m.load_state_dict(fin.state)
    with torch.no_grad():
        logits = m(tx)
    loss = nn.functional.cross_entropy(logits, assigned, reduction="none")
    np.testing.assert_array_equal(correct[-1], (logits.argmax(1) == assigned).numpy())
    np.testing.assert_allclose(run.array("examples/train/loss", 60), loss.numpy(), rtol=2e-3, atol=1e-3)
    other = logits.scatter(1, assigned[:, None], -1e9).amax(1)
    margin = logits.gather(1, assigned[:, None])[:, 0] - other
    np.testing.assert_allclose(run.array("examples/train/margin", 60), margin.numpy(), rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(run.array("examples/train/p_true", 60), torch.exp(-loss).numpy(), atol=1e-3)
    np.testing.assert_array_equal(run.array("examples/train/correct_true", 60),
                                  (logits.argmax(1) == ty).numpy())
    # corrupted tags once, at the first evaluation
    cs, tags = run.arrays("examples/train/corrupted")
    assert cs.tolist() == [0] and tags[0].tolist() == corrupted.numpy().astype(np.uint8).tolist()
    # subset scalars
    acc = (logits.argmax(1) == assigned)
    assert run.series("examples/train/acc_corrupted")[1][-1] == pytest.approx(float(acc[corrupted].float().mean()))
    assert run.series("examples/train/acc_clean")[1][-1] == pytest.approx(float(acc[~corrupted].float().mean()))
    assert run.series("examples/val/acc")[1].shape == (7,)
    assert run.arrays("examples/val/correct")[1].shape == (7, len(vx))
    # Toneva events and cartography from the stored correctness / p_true matrices
    c = correct.astype(int)
    forget = ((c[:-1] == 1) & (c[1:] == 0)).sum(0)
    learn = ((c[:-1] == 0) & (c[1:] == 1)).sum(0)
    np.testing.assert_array_equal(run.array("examples/train/forgetting", 60), forget)
    np.testing.assert_array_equal(run.array("examples/train/learning", 60), learn)
    assert run.series("examples/train/n_learned")[1].sum() == learn.sum()
    conf = run.array("examples/train/confidence", 60)
    _, pt = run.arrays("examples/train/p_true")
    np.testing.assert_allclose(conf, pt.astype(np.float64).mean(0), atol=1e-3)
    np.testing.assert_allclose(run.array("examples/train/variability", 60), pt.astype(np.float64).std(0), atol=1e-3)
    np.testing.assert_allclose(run.array("examples/train/correctness", 60), c.mean(0), atol=1e-6)


def test_finds_data_from_dataloader_and_from_task(tmp_path):
    (tx, ty), _ = modular_data()
    trainer = make_trainer(tmp_path / "a", [ExampleTracker(cadence=5, val=False)], max_steps=5)
    trainer.fit(UserModule(), full_batch_loader(tx, ty))
    assert read_run(trainer).arrays("examples/train/correct")[1].shape == (2, len(tx))

    trainer = make_trainer(tmp_path / "b", [ExampleTracker(cadence=5)], max_steps=5,
                           limit_val_batches=0)
    dm = TaskDataModule("x+y", p=11, frac=0.5, task_kwargs={"corrupt": 0.2})
    module = PhaseModule(dm.task, model="embedding_mlp", lr=1e-2)
    trainer.fit(module, datamodule=dm)
    run = read_run(trainer)
    assert run.arrays("examples/train/correct")[1].shape == (2, len(dm.task.train_y))
    np.testing.assert_array_equal(run.array("examples/train/corrupted", 0), dm.task.train_corrupted.numpy())
    np.testing.assert_array_equal(run.array("examples/train/index", 0), dm.task.train_index.numpy())
    assert run.arrays("examples/val/loss")[1].shape == (2, len(dm.task.val_y))


def test_bad_arguments():
    with pytest.raises(ValueError, match="'hinge'"):
        ExampleTracker(loss="hinge")
    with pytest.raises(ValueError, match="batch_size"):
        ExampleTracker(batch_size=0)
    with pytest.raises(ValueError, match="train"):
        ExampleTracker(train=torch.zeros(3))

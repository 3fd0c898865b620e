"""On a CUDA device the trainer reaches the same numbers as on the CPU (run with ``-m gpu``)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule

pytestmark = pytest.mark.gpu


def train_metrics(accelerator: str, model: str) -> dict[str, float]:
    pl.seed_everything(0, verbose=False)
    dm = TaskDataModule(task="x+y", p=59, frac=0.5)
    module = PhaseModule(dm.task, model=model, lr=3e-3)
    trainer = pl.Trainer(max_steps=200, val_check_interval=50, check_val_every_n_epoch=None,
                         accelerator=accelerator, devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, dm)
    return {k: float(v) for k, v in trainer.callback_metrics.items()}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("model", ["embedding_mlp", "transformer1"])
def test_cuda_training_matches_cpu(model: str) -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu, gpu = train_metrics("cpu", model), train_metrics("gpu", model)
    assert set(cpu) == set(gpu) and "val/acc" in cpu
    for key in cpu:
        assert gpu[key] == pytest.approx(cpu[key], rel=0.05, abs=0.02), key

"""PhaseModule's losses, evaluation and Grokfast filter, checked against direct computations."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from phasewatch.trainer.grokfast import GradFilter
from phasewatch.trainer.module import PhaseModule
from phasewatch.trainer.tasks import build_task


def test_grokfast_ema_and_ma_follow_lee_et_al() -> None:
    param = torch.nn.Parameter(torch.zeros(3))
    ema = GradFilter("ema", alpha=0.9, lamb=2.0)
    g1, g2 = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([-1.0, 0.0, 1.0])
    param.grad = g1.clone()
    ema.apply([("w", param)])
    assert torch.allclose(param.grad, g1 + 2.0 * g1)          # mu starts at the first gradient
    param.grad = g2.clone()
    ema.apply([("w", param)])
    mu = 0.9 * g1 + 0.1 * g2
    assert torch.allclose(param.grad, g2 + 2.0 * mu)
    ma = GradFilter("ma", lamb=5.0, window=2)
    param.grad = g1.clone()
    ma.apply([("w", param)])
    assert torch.allclose(param.grad, g1)                     # window not full yet: unchanged
    param.grad = g2.clone()
    ma.apply([("w", param)])
    assert torch.allclose(param.grad, g2 + 5.0 * (g1 + g2) / 2)
    restored = GradFilter("ema", alpha=0.9, lamb=2.0)
    restored.load_state_dict(ema.state_dict())
    assert torch.equal(restored.ema["w"], ema.ema["w"])


def test_losses_match_direct_computation() -> None:
    task = build_task("x+y", p=7, frac=0.5)
    logits, y = torch.randn(5, 7), torch.tensor([0, 1, 2, 3, 6])
    ce = PhaseModule(task, model="embedding_mlp")
    assert torch.allclose(ce.loss_fn(logits, y), F.cross_entropy(logits, y))
    mse = PhaseModule(task, model="quadratic_mlp", loss="mse")
    assert torch.allclose(mse.loss_fn(logits, y), ((logits - F.one_hot(y, 7)) ** 2).sum(-1).mean())
    wide = PhaseModule(task, model="embedding_mlp", loss_float64=True)
    assert wide.loss_fn(logits, y).dtype == torch.float64


def test_multi_token_outputs_average_positions_and_score_exact_match() -> None:
    task = build_task("keyvalue", n_pairs=20)
    module = PhaseModule(task, model="mlp")
    logits = module.model(task.train_x)
    per_position = F.cross_entropy(logits.flatten(0, 1), task.train_y.flatten(), reduction="none")
    assert torch.allclose(module.loss_fn(logits, task.train_y), per_position.mean(), atol=1e-6)
    _, correct, _ = module.evaluate(task.train_x, task.train_y)
    expected = (logits.argmax(-1) == task.train_y).all(-1).float()
    assert torch.equal(correct, expected)


@pytest.mark.parametrize("field, value", [("loss", "hinge"), ("lr", 0.0), ("weight_decay", -1.0),
                                          ("grokfast", "fast")])
def test_bad_module_arguments_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        PhaseModule(build_task("x+y", p=7), model="embedding_mlp", **{field: value})

"""default_callbacks: fits a user's module (probes that do not apply are dropped, the example
tracker warns instead of failing), and PHASEWATCH_TRACKING=0 / tracking=False turn it off."""

import warnings

import pytest
import torch

from phasewatch.callbacks import CircuitCheckpoint, default_callbacks

from cb_helpers import UserModule, make_trainer, modular_data, read_run


class Batches:
    """An iterable loader without a `.dataset` (the example tracker cannot find the data)."""

    def __init__(self, x, y, n):
        self.x, self.y, self.n = x, y, n

    def __iter__(self):
        return iter([(self.x, self.y)] * self.n)

    def __len__(self):
        return self.n


def test_default_set_on_a_user_module(tmp_path):
    (tx, ty), _ = modular_data()
    cbs = default_callbacks()
    trainer = make_trainer(tmp_path, cbs, max_steps=5)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        trainer.fit(UserModule(), Batches(tx, ty, 5))
    assert any("cannot find the training set" in str(w.message) for w in rec)
    run = read_run(trainer)
    assert {"weights/sum_sq", "grads/norm"} <= set(run.names())
    assert run.meta["circuit/probes"] == []  # no hook points, no task: no probe applies
    cc = [c for c in cbs if isinstance(c, CircuitCheckpoint)][0]
    assert [p.name for p in cc.probes] == ["fourier", "attention", "ablation"]


def test_tracking_off(monkeypatch):
    assert default_callbacks(tracking=False) == []
    monkeypatch.setenv("PHASEWATCH_TRACKING", "0")
    assert default_callbacks() == []
    monkeypatch.setenv("PHASEWATCH_TRACKING", "1")
    names = [type(c).__name__ for c in default_callbacks()]
    assert names[:4] == ["WeightNormMonitor", "GradientMonitor", "ExampleTracker", "CircuitCheckpoint"]
    with pytest.raises(ValueError, match="bogus"):
        default_callbacks(cadences={"bogus": 3})

"""WeightNormMonitor and GradientMonitor on a user's own LightningModule, read back from SQLite."""

import copy

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from phasewatch.callbacks import GradientMonitor, WeightNormMonitor

from cb_helpers import UserModule, full_batch_loader, make_trainer, modular_data, read_run


class Recorder(pl.Callback):
    """Keeps a copy of the module after every optimizer step (the test's own reference)."""

    def __init__(self):
        self.states = {}

    def on_train_start(self, trainer, pl_module):
        self.states[trainer.global_step] = copy.deepcopy(pl_module.state_dict())

    def on_train_batch_end(self, trainer, pl_module, *a):
        self.states[trainer.global_step] = copy.deepcopy(pl_module.state_dict())


def _fit(tmp_path, callbacks, steps=12):
    (tx, ty), _ = modular_data()
    module, rec = UserModule(), Recorder()
    trainer = make_trainer(tmp_path, callbacks + [rec], max_steps=steps)
    trainer.fit(module, full_batch_loader(tx, ty))
    return read_run(trainer), rec, (tx, ty)


def test_weight_norms_equal_direct_computation(tmp_path):
    cb = WeightNormMonitor(cadence="every:4", include=r"^net", spectral=True)
    run, rec, _ = _fit(tmp_path, [cb])
    steps, sum_sq = run.series("weights/sum_sq")
    assert steps.tolist() == [0, 4, 8, 12]
    for s, v in zip(steps, sum_sq):
        st = rec.states[int(s)]
        assert v == pytest.approx(sum(float((t.double() ** 2).sum()) for t in st.values()), rel=1e-6)
        d = sum(float(((st[k].double() - rec.states[0][k].double()) ** 2).sum()) for k in st)
        n0 = sum(float((t.double() ** 2).sum()) for t in rec.states[0].values())
        assert run.series("weights/dist_init")[1][list(steps).index(s)] == \
            pytest.approx(np.sqrt(d / n0), rel=1e-5, abs=1e-9)
    _, l2 = run.series("weights/l2")
    np.testing.assert_allclose(l2, np.sqrt(sum_sq), rtol=1e-9)
    w = rec.states[12]["net.0.weight"].double()
    s = torch.linalg.svdvals(w)
    assert run.series("weights/spectral/net.0.weight")[1][-1] == pytest.approx(float(s[0]), rel=1e-6)
    assert run.series("weights/stable_rank/net.0.weight")[1][-1] == pytest.approx(
        float((s ** 2).sum() / s[0] ** 2), rel=1e-6)
    net0 = rec.states[12]["net.0.weight"].double().norm() ** 2 + rec.states[12]["net.0.bias"].double().norm() ** 2
    assert run.series("weights/norm/net.0")[1][-1] == pytest.approx(float(net0.sqrt()), rel=1e-6)
    assert "weights/norm/emb" not in run.names()


def test_gradient_stats_equal_direct_computation(tmp_path):
    cb = GradientMonitor(cadence="every:3", include=r"^net")
    run, rec, (tx, ty) = _fit(tmp_path, [cb])
    steps, gnorm = run.series("grads/norm")
    assert steps.tolist() == [3, 6, 9, 12]

    def grads_at(step):  # gradient of the update step -> step + 1, recomputed from weights
        m = UserModule()
        m.load_state_dict(rec.states[step])
        loss = nn.functional.cross_entropy(m(tx), ty)
        return torch.autograd.grad(loss, list(m.parameters()))

    for s, g in zip(steps, gnorm):
        ref = grads_at(int(s) - 1)
        assert g == pytest.approx(float(torch.sqrt(sum((r.double() ** 2).sum() for r in ref))), rel=1e-5)
        prev = grads_at(int(s) - 2)
        dot = sum((a.double() * b.double()).sum() for a, b in zip(ref, prev))
        cos = dot / torch.sqrt(sum((a.double() ** 2).sum() for a in ref) *
                               sum((b.double() ** 2).sum() for b in prev))
        k = steps.tolist().index(s)
        assert run.series("grads/cos_prev")[1][k] == pytest.approx(float(cos), abs=1e-5)
        upd = sum(float(((rec.states[int(s)][n].double() - rec.states[int(s) - 1][n].double()) ** 2).sum())
                  for n in rec.states[0])
        assert run.series("grads/update")[1][k] == pytest.approx(np.sqrt(upd), rel=1e-5)
    assert {"grads/norm/net.0", "grads/norm/net.2", "grads/update_rel"} <= set(run.names())


@pytest.mark.parametrize("cls", [WeightNormMonitor, GradientMonitor])
def test_bad_arguments_name_the_value(cls):
    with pytest.raises(ValueError, match="every:0"):
        cls(cadence="every:0")
    with pytest.raises(ValueError, match=r"\(unclosed"):
        cls(include="(unclosed")


def test_hooks_a_callback_does_not_use_are_skipped_and_subclass_hooks_still_run(tmp_path):
    """LeanCallback: Lightning's dispatcher skips the per-step hooks a callback does not override
    (None on the instance), while a user's subclass that adds one (calling super()) or a mixin
    that defines one gets it called at every step."""
    calls = {"sub": 0, "mixin": 0}

    class Counting(WeightNormMonitor):
        def on_after_backward(self, trainer, pl_module):
            super().on_after_backward(trainer, pl_module)  # pl.Callback's no-op
            calls["sub"] += 1

    class ZeroGradCounter(pl.Callback):
        def on_before_zero_grad(self, trainer, pl_module, optimizer):
            calls["mixin"] += 1

    class Both(WeightNormMonitor, ZeroGradCounter):
        pass

    assert WeightNormMonitor().on_after_backward is None
    assert callable(WeightNormMonitor.on_after_backward)  # the class keeps the method
    assert GradientMonitor().on_before_optimizer_step is not None
    cbs = [Counting(cadence="every:5"), Both(cadence="never"), WeightNormMonitor(cadence="every:3")]
    run, _, _ = _fit(tmp_path, cbs, steps=10)
    assert calls == {"sub": 10, "mixin": 10}
    assert run.series("weights/sum_sq")[0].tolist() == [0, 3, 5, 6, 9, 10]

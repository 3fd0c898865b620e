"""CircuitCheckpoint + probes: Fourier measures vs direct computation, every built-in modular
model, ablation / attention read back, and the failure policy (no leaked hooks, one warning)."""

import math
import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch import nn

from phasewatch.callbacks import (AblationProbe, AttentionProbe, CircuitCheckpoint, FourierProbe,
                                  ProbeResult)
from phasewatch.callbacks._base import hook_count
from phasewatch.callbacks.fourier import gini
from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.module import PhaseModule

from cb_helpers import full_batch_loader, make_trainer, modular_data, read_run

P = 13


class FourierModel(nn.Module):
    """A user's model whose neurons are exactly cos(w_k(a+b) + phase) for k in FREQS."""

    FREQS = (2, 5)

    def __init__(self, p=P, per_freq=6):
        super().__init__()
        self.p = p
        ks = torch.tensor([k for k in self.FREQS for _ in range(per_freq)], dtype=torch.float64)
        self.register_buffer("w", 2 * math.pi * ks / p)
        self.register_buffer("phase", torch.linspace(0, 3, len(ks), dtype=torch.float64))
        self.embed = nn.Embedding(p, 4)
        self.out = nn.Linear(len(ks), p)
        self.hook_neurons = nn.Identity()

    def forward(self, x):
        s = (x[:, 0] + x[:, 1]).double()[:, None]
        h = self.hook_neurons(torch.cos(self.w * s + self.phase).float())
        return self.out(h) + 0 * self.embed(x).sum()

    def embedding_tables(self):
        return {"embed": self.embed.weight}

    def unembedding_table(self):
        return self.out.weight


def _direct_losses(logits, labels, p, freqs, train_idx):
    """Independent implementation: least-squares projection onto cos/sin(w_k (a+b))."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    s = (a + b).flatten()
    basis = np.stack([f(2 * np.pi * k * s / p) for k in freqs for f in (np.cos, np.sin)], 1)
    L = logits.astype(np.float64)
    coef, *_ = np.linalg.lstsq(basis, L, rcond=None)
    proj = basis @ coef
    restricted = proj + (L - proj).mean(0, keepdims=True)
    excluded = L - proj

    def ce(z, y):
        z = z - z.max(1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(1)) - z[np.arange(len(y)), y]))

    return ce(restricted, labels), ce(excluded[train_idx], labels[train_idx])


def test_fourier_probe_key_freqs_and_losses_equal_direct_computation():
    torch.manual_seed(0)
    model = FourierModel()
    (tx, _), _ = modular_data(p=P, frac=0.5)
    train_idx = (tx[:, 0] * P + tx[:, 1]).sort().values
    cc = CircuitCheckpoint([FourierProbe(p=P, train_index=train_idx)])
    res = cc.run_probes(None, model)["fourier"]
    mask = res.arrays["circuit/key_freqs"]
    assert np.flatnonzero(mask).tolist() == list(FourierModel.FREQS)
    assert res.scalars["circuit/n_key_freqs"] == 2 and res.scalars["circuit/share_neurons_explained"] == 1
    assert set(res.arrays["circuit/neuron_freq"].tolist()) == set(FourierModel.FREQS)
    grid = torch.stack(torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        logits = model(grid).numpy()
    labels = ((grid[:, 0] + grid[:, 1]) % P).numpy()
    r, e = _direct_losses(logits, labels, P, FourierModel.FREQS, train_idx.numpy())
    assert res.scalars["circuit/restricted_loss"] == pytest.approx(r, rel=1e-5)
    assert res.scalars["circuit/excluded_loss"] == pytest.approx(e, rel=1e-5)
    # these logits live in the span of the key frequencies: restricting changes nothing
    full = float(nn.functional.cross_entropy(torch.tensor(logits, dtype=torch.float64), torch.tensor(labels)))
    assert res.scalars["circuit/restricted_loss"] == pytest.approx(full, rel=1e-5)
    # Gini of the unembedding's Fourier component norms (Hurley-Rickard, direct)
    F = np.stack([np.ones(P)] + [f(2 * np.pi * k * np.arange(P) / P) for k in range(1, P // 2 + 1)
                                 for f in (np.cos, np.sin)])
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    c = np.sort(np.linalg.norm(F @ model.out.weight.detach().double().numpy(), axis=1))
    n = len(c)
    g = 1 - 2 * np.sum(c / c.sum() * (n - np.arange(1, n + 1) + 0.5) / n)
    assert res.scalars["circuit/gini_unembed"] == pytest.approx(g, rel=1e-6)
    assert gini(torch.ones(10)) == pytest.approx(0.0, abs=1e-12)
    assert gini(torch.tensor([0.0] * 9 + [1.0])) == pytest.approx(0.9)


@pytest.mark.parametrize("name", ["embedding_mlp", "quadratic_mlp", "transformer1", "transformer2"])
def test_probes_on_every_builtin_modular_model(tmp_path, name):
    dm = TaskDataModule("x+y", p=P, frac=0.5)
    kw = {"d_model": 32, "d_mlp": 64} if name.startswith("transformer") else {}
    module = PhaseModule(dm.task, model=name, lr=1e-2, model_kwargs=kw,
                         loss="mse" if name == "quadratic_mlp" else "cross_entropy")
    cc = CircuitCheckpoint([FourierProbe(threshold=0.5), AblationProbe(threshold=0.0),
                            AttentionProbe()], cadence="every:3", on_error="raise", optional=True)
    trainer = make_trainer(tmp_path, [cc], max_steps=6, limit_val_batches=0)
    trainer.fit(module, datamodule=dm)
    assert hook_count(module) == 0
    run = read_run(trainer)
    steps, norms = run.arrays("circuit/fourier_norm/unembed")
    assert steps.tolist() == [0, 3, 6] and norms.shape == (3, P)
    assert run.arrays("circuit/key_freqs")[1].shape == (3, (P + 1) // 2)
    for s in ("circuit/gini", "circuit/n_key_freqs", "circuit/share_neurons_explained"):
        assert np.isfinite(run.series(s)[1]).all(), s
    if name == "transformer2":  # no neuron_input_weights: no IPR
        assert "circuit/ipr_mean" not in run.names()
        assert "circuit/neuron_ipr" not in run.array_names()
    else:
        ipr = run.series("circuit/ipr_mean")[1]
        assert ipr.shape == (3,) and ((ipr > 1 / (P // 2)) & (ipr < 1)).all(), ipr
        d_mlp = {"embedding_mlp": 128, "quadratic_mlp": 500}.get(name, 64)
        assert run.arrays("circuit/neuron_ipr")[1].shape == (3, d_mlp)
    if name.startswith("transformer"):
        assert run.meta["circuit/probes"] == ["fourier", "ablation", "attention"]
        comps = run.meta["circuit/ablation_components"]
        imp = run.arrays("circuit/ablation_importance")[1]
        assert imp.shape == (3, len(comps)) and run.series("circuit/size")[1].shape == (3,)
        assert run.series("circuit/overlap")[0].tolist() == [3, 6]
        ent = run.arrays("attn/entropy")[1]
        assert ent.shape[1:] == (1 if name == "transformer1" else 2, 4)
        assert (ent >= 0).all() and (ent <= math.log(3) + 1e-5).all()  # keys: a, b, "="
        assert "circuit/ablation_importance" in run.array_names()
    else:  # one component only, no attention: those probes do not apply, and the meta says why
        assert run.meta["circuit/probes"] == ["fourier"]
        assert "hook_pattern" in run.meta["circuit/skipped"]["attention"]
        assert "components()" in run.meta["circuit/skipped"]["ablation"]


def test_ablation_importance_equals_direct_mean_ablation():
    dm = TaskDataModule("x+y", p=P, frac=0.5)
    module = PhaseModule(dm.task, model="transformer1", model_kwargs={"d_model": 32, "d_mlp": 64})
    model = module.model.eval()
    res = CircuitCheckpoint([AblationProbe(threshold=0.0)]).run_probes(None, module)["ablation"]
    x, y = dm.task.train_x, dm.task.train_y
    comps = model.components()
    names = sorted(comps)
    hook, idx = comps["blocks.0.mlp"]
    with torch.no_grad():
        store = {}
        h = hook.register_forward_hook(lambda m, i, o: store.__setitem__("o", o))
        base = nn.functional.cross_entropy(model(x), y)
        h.remove()
        mean = store["o"].mean(0, keepdim=True)
        h = hook.register_forward_hook(lambda m, i, o: mean.expand_as(o))
        abl = nn.functional.cross_entropy(model(x), y)
        h.remove()
    i = names.index("blocks.0.mlp")
    assert res.arrays["circuit/ablation_importance"][i] == pytest.approx(float(abl - base), abs=1e-5)
    assert hook_count(model) == 0


class LeakyFailingProbe:
    name = "leaky"

    def __init__(self):
        self.calls = 0

    def __call__(self, model, ctx):
        self.calls += 1
        model.register_forward_hook(lambda m, i, o: o)  # never removed by the probe itself
        model.register_forward_pre_hook(lambda m, i: None)
        raise RuntimeError("boom")


class ConstProbe:
    name = "const"

    def __call__(self, model, ctx):
        return ProbeResult({"user/const": 1.0}, {"user/arr": np.arange(3)})


def test_failing_probe_leaves_no_hooks_warns_once_and_training_continues(tmp_path):
    from cb_helpers import UserModule
    (tx, ty), _ = modular_data()
    leaky = LeakyFailingProbe()
    module = UserModule()
    cc = CircuitCheckpoint([leaky, ConstProbe()], cadence="every:2")
    trainer = make_trainer(tmp_path, [cc], max_steps=6)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        trainer.fit(module, full_batch_loader(tx, ty))
    ours = [w for w in rec if "probe 'leaky' failed" in str(w.message)]
    assert len(ours) == 1 and leaky.calls == 4
    assert hook_count(module) == 0 and trainer.global_step == 6
    run = read_run(trainer)
    assert run.series("circuit/probe_failures/leaky")[1].tolist() == [1, 2, 3, 4]
    assert run.series("user/const")[0].tolist() == [0, 2, 4, 6]  # the other probe still ran
    assert run.arrays("user/arr")[1].tolist() == [[0, 1, 2]] * 4

    cc = CircuitCheckpoint([LeakyFailingProbe()], cadence="every:2", on_error="raise")
    module = UserModule()
    with pytest.raises(RuntimeError, match="probe 'leaky' failed at step 0"):
        make_trainer(tmp_path / "r", [cc], max_steps=6).fit(module, full_batch_loader(tx, ty))
    assert hook_count(module) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="unique"):
        CircuitCheckpoint([ConstProbe(), ConstProbe()])
    with pytest.raises(ValueError, match="not a probe"):
        CircuitCheckpoint([object()])
    with pytest.raises(ValueError, match="'ignore'"):
        CircuitCheckpoint([ConstProbe()], on_error="ignore")
    with pytest.raises(ValueError, match="12"):
        FourierProbe(p=12)


class DenseWindow(pl.Callback):
    """Stands in for a PhaseMonitor that reports a transition under way before steps 10-19."""

    def on_train_batch_start(self, trainer, *args):
        trainer.phasewatch_dense = 10 <= trainer.global_step < 20


def test_dense_flag_adds_probe_steps_during_a_transition(tmp_path):
    from cb_helpers import UserModule
    (tx, ty), _ = modular_data()
    cc = CircuitCheckpoint([ConstProbe()], cadence="every:100", dense_every=3)
    trainer = make_trainer(tmp_path, [DenseWindow(), cc], max_steps=30)
    trainer.fit(UserModule(), full_batch_loader(tx, ty))
    assert read_run(trainer).series("user/const")[0].tolist() == [0, 12, 15, 18]
    with pytest.raises(ValueError, match="dense_every"):
        CircuitCheckpoint([ConstProbe()], dense_every=0)

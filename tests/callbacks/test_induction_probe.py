"""InductionProbe: scores on hand-built attention patterns with known answers (the minimal
interface of a user's model), on the real attention-only transformer inside a Lightning run."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from phasewatch.callbacks import CircuitCheckpoint, InductionProbe, RepeatSet, WeightSnapshot
from phasewatch.callbacks.circuit import ProbeContext
from phasewatch.callbacks.induction import copying_scores, icl_score, sample_repeats

V, LENGTH, SEG, N = 16, 20, 5, 32


class HandBuilt(nn.Module):
    """A user's model with fixed attention: layer 0 previous-token (head 0) / uniform (head 1),
    layer 1 induction (head 0) / attend-to-self (head 1). Its logits put probability ``p_hit``
    on the right token at the predictable repeated targets, uniform elsewhere."""

    def __init__(self, ps: RepeatSet, p_hit: float = 0.9):
        super().__init__()
        self.ps, self.p_hit = ps, p_hit
        self.layers = nn.ModuleList([nn.Module(), nn.Module()])
        for layer in self.layers:
            layer.hook_pattern = nn.Identity()
        self.dummy = nn.Parameter(torch.zeros(1))

    def patterns(self, n: int, T: int):
        causal = torch.ones(T, T).tril()
        uniform = causal / causal.sum(-1, keepdim=True)
        prev = torch.zeros(T, T)
        prev[0, 0] = 1
        prev[torch.arange(1, T), torch.arange(T - 1)] = 1
        ind = uniform.expand(n, T, T).clone()
        for i in range(n):
            s, d = int(self.ps.src[i]), int(self.ps.dst[i])
            for k in range(SEG - 1):
                ind[i, d + k] = 0
                ind[i, d + k, s + k + 1] = 1
        layer0 = torch.stack([prev.expand(n, T, T), uniform.expand(n, T, T)], 1)
        layer1 = torch.stack([ind, torch.eye(T).expand(n, T, T)], 1)
        return layer0, layer1

    def forward(self, x):
        n, T = x.shape
        assert torch.equal(x, self.ps.x[:n])
        for layer, pat in zip(self.layers, self.patterns(n, T)):
            layer.hook_pattern(pat)
        logits = torch.zeros(n, T, V)
        for i in range(n):
            for k in range(SEG - 1):
                q = int(self.ps.dst[i]) + k
                tok = int(self.ps.y[i, q])
                logits[i, q] = math.log((1 - self.p_hit) / (V - 1))
                logits[i, q, tok] = math.log(self.p_hit)
        return logits

    def ov_circuits(self):
        eye = torch.eye(V)
        return torch.stack([torch.stack([eye, -eye]), torch.stack([2 * eye, eye])])


@pytest.fixture(scope="module")
def repeat_set():
    return RepeatSet.random(vocab=V, length=LENGTH, segment=SEG, n=N, seed=3)


def test_sample_repeats_random_offset_and_copy():
    seq, src, dst = sample_repeats(4000, V, LENGTH, SEG, torch.Generator().manual_seed(0))
    for i in range(50):
        s, d = int(src[i]), int(dst[i])
        assert d > s and d + SEG <= LENGTH
        assert torch.equal(seq[i, s:s + SEG], seq[i, d:d + SEG])
        # overlapping repeats are periodic: every repeated token equals the one d - s back
        assert all(int(seq[i, j]) == int(seq[i, j - (d - s)]) for j in range(d, d + SEG))
    offsets = (dst - src).numpy()
    # every admissible offset occurs, overlapping ones too: position alone cannot predict the repeat
    assert set(np.unique(offsets)) == set(range(1, LENGTH - SEG + 1))
    assert set(np.unique(dst.numpy())) == set(range(1, LENGTH - SEG + 1))


def test_scores_on_hand_built_patterns(repeat_set):
    model = HandBuilt(repeat_set)
    res = InductionProbe(repeat_set)(model, ProbeContext(None, None, 0))
    pm, prev = res.arrays["circuit/prefix_matching"], res.arrays["circuit/prev_token"]
    T = LENGTH - 1
    # independent: uniform causal attention to key s+k+1 from query d+k is 1 / (d + k + 1)
    uni = np.mean([1 / (int(d) + k + 1) for d in repeat_set.dst for k in range(SEG - 1)])
    # the previous-token head and the self-attending head meet key s+k+1 at gaps 2 and 1
    gap = (repeat_set.dst - repeat_set.src).numpy()
    np.testing.assert_allclose(pm, [[np.mean(gap == 2), uni], [1.0, np.mean(gap == 1)]], atol=1e-6)
    uni_prev = np.mean([1 / (i + 1) for i in range(1, T)])
    ind_prev = np.mean([np.mean([1.0 if (int(d) <= i < int(d) + SEG - 1 and int(s) + i - int(d) + 1 == i - 1)
                                 else (0.0 if int(d) <= i < int(d) + SEG - 1 else 1 / (i + 1))
                                 for i in range(1, T)]) for s, d in zip(repeat_set.src, repeat_set.dst)])
    np.testing.assert_allclose(prev, [[1.0, uni_prev], [ind_prev, 0.0]], atol=1e-6)
    np.testing.assert_allclose(res.arrays["circuit/copying"], [[1, 0], [1, 1]], atol=1e-6)
    assert res.scalars["circuit/prefix_matching_max"] == pytest.approx(1.0)
    assert res.scalars["circuit/prefix_matching/layers.1.head0"] == pytest.approx(1.0)
    assert res.scalars["circuit/repeat_loss"] == pytest.approx(-math.log(0.9), rel=1e-5)
    assert res.scalars["circuit/nonrepeat_loss"] == pytest.approx(math.log(V), rel=1e-5)
    by_pos = res.arrays["circuit/loss_by_position"]
    hits = np.zeros(T)
    for d in repeat_set.dst:
        hits[int(d):int(d) + SEG - 1] += 1 / N
    np.testing.assert_allclose(by_pos, hits * -math.log(0.9) + (1 - hits) * math.log(V), rtol=1e-5)
    late, early = round(500 / 511 * (T - 1)), round(50 / 511 * (T - 1))
    assert res.scalars["circuit/icl_score"] == pytest.approx(by_pos[late] - by_pos[early], abs=1e-6)
    np.testing.assert_allclose(res.arrays["circuit/repeat_loss_by_offset"], -math.log(0.9), rtol=1e-5)


def test_copying_score_of_a_rotation_and_icl_scaling():
    c, s = math.cos(2.0), math.sin(2.0)  # eigenvalues e^{+-2i}: real part < 0 -> not copying
    rot = torch.tensor([[c, -s], [s, c]])
    assert float(copying_scores(rot)) == pytest.approx(0.0)
    assert float(copying_scores(torch.diag(torch.tensor([3.0, -1.0])))) == pytest.approx(0.75)
    assert icl_score(np.arange(512.0)) == pytest.approx(450.0)  # Olsson's tokens 500 and 50


def test_clear_errors_for_models_without_the_interface(repeat_set):
    with pytest.raises(ValueError, match="RepeatSet"):
        InductionProbe(probe_set="seqs")
    lin = nn.Linear(3, 3)
    probe = InductionProbe(repeat_set)
    assert not probe.applicable(lin, None)
    with pytest.raises(ValueError, match="hook_pattern"):
        probe(lin, ProbeContext(None, None, 0))


def test_probe_in_a_lightning_run_on_the_attention_only_transformer(tmp_path):
    import pytorch_lightning as pl

    from phasewatch.analysis import load_run
    from phasewatch.callbacks.trace_logger import TraceLogger
    from phasewatch.trainer.data import TaskDataModule
    from phasewatch.trainer.module import PhaseModule

    dm = TaskDataModule(task="induction", batch_size=16, steps_per_epoch=6,
                        task_kwargs={"vocab": V, "length": LENGTH, "segment": SEG, "n_eval": 24})
    module = PhaseModule(dm.task, model="attn_only", weight_decay=0.01,
                         model_kwargs={"d_model": 16, "n_heads": 2, "n_layers": 2})
    cb = CircuitCheckpoint([InductionProbe()], cadence="every:3", on_error="raise")
    snaps = WeightSnapshot(cadence="every:6")
    trainer = pl.Trainer(max_steps=6, logger=TraceLogger(str(tmp_path), name="ind"),
                         callbacks=[cb, snaps], enable_progress_bar=False, enable_checkpointing=False,
                         enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0)
    trainer.fit(module, dm)
    trainer.logger.store.flush()
    run = load_run(trainer.logger.log_dir)
    steps, pm = run.series("circuit/prefix_matching_max")
    assert steps.tolist() == [0, 3, 6]
    a_steps, tables = run.arrays("circuit/prefix_matching")
    assert tables.shape == (3, 2, 2) and np.allclose(tables.max(axis=(1, 2)), pm, atol=1e-6)
    # the logged repeat loss equals an independent evaluation of the final model
    model = module.model.eval()
    with torch.no_grad():
        logits = model(dm.task.train_x)
    losses = torch.nn.functional.cross_entropy(logits.transpose(1, 2), dm.task.train_y, reduction="none")
    rep = torch.cat([losses[i, int(d):int(d) + SEG - 1] for i, d in enumerate(dm.task.train_dst)])
    assert run.series("circuit/repeat_loss")[1][-1] == pytest.approx(float(rep.mean()), rel=1e-4)
    assert all(not m._forward_hooks for m in model.modules())
    run.close()
    # the LLC afterwards from the run's snapshots, the run rebuilt from its config.yaml
    import yaml

    from phasewatch.trainer.llc_snapshots import llc_series
    cfg = {"data": {"task": "induction", "batch_size": 16, "steps_per_epoch": 6,
                    "task_kwargs": {"vocab": V, "length": LENGTH, "segment": SEG, "n_eval": 24}},
           "model": {"model": "attn_only", "weight_decay": 0.01,
                     "model_kwargs": {"d_model": 16, "n_heads": 2, "n_layers": 2}}}
    (Path(trainer.logger.log_dir) / "config.yaml").write_text(yaml.safe_dump(cfg))
    rows = llc_series(trainer.logger.log_dir, n_fresh=64, batch_size=32, chains=2, draws=20)
    assert [r["step"] for r in rows] == [0, 6] and all(math.isfinite(r["llc"]) for r in rows)
    x64, y64 = dm.task.sample(64, torch.Generator().manual_seed(0))  # llc_series' fixed dataset
    with torch.no_grad():
        assert rows[-1]["init_loss"] == pytest.approx(float(module.loss_fn(model(x64), y64)), rel=1e-4)


def test_docstring_examples():
    import doctest

    import phasewatch.callbacks.induction as probe_mod
    import phasewatch.trainer.induction as task_mod
    for mod in (probe_mod, task_mod):
        assert doctest.testmod(mod).failed == 0

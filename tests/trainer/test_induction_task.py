"""The induction task, its fresh batches and the attention-only transformer (fast checks)."""

import pytest
import torch

from phasewatch.trainer.data import TaskDataModule
from phasewatch.trainer.induction import AttnOnlyTransformer, FreshBatches, build_induction_task
from phasewatch.trainer.models import build_model


def test_task_sets_targets_and_repeats():
    t = build_induction_task(vocab=32, length=30, segment=6, n_eval=40, seed=2)
    seq = torch.cat([t.train_x[:, :1], t.train_y], 1)  # targets are the inputs shifted by one
    assert torch.equal(seq[:, 1:-1], t.train_x[:, 1:])
    for i in range(40):
        a, b = int(t.train_src[i]), int(t.train_dst[i])
        assert torch.equal(seq[i, a:a + 6], seq[i, b:b + 6]) and a < b <= 24
    assert not torch.equal(t.train_x, t.val_x)
    with pytest.raises(ValueError, match="segment=16"):
        build_induction_task(length=30, segment=16)


def test_fresh_batches_differ_per_step_and_resume_exactly():
    t = build_induction_task(vocab=16, length=12, segment=3, n_eval=2)
    full = [x for x, _, _ in FreshBatches(t, 8, steps=5, seed=4)]
    assert not torch.equal(full[0], full[1])
    resumed = [x for x, _, _ in FreshBatches(t, 8, steps=2, seed=4, position=lambda: 3)]
    assert torch.equal(resumed[0], full[3]) and torch.equal(resumed[1], full[4])
    with pytest.raises(ValueError, match="batch_size"):
        TaskDataModule(task="induction", batch_size=None)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_model_is_causal_and_ov_circuit_matches_a_direct_path(layer_norm):
    torch.manual_seed(0)
    m = AttnOnlyTransformer(vocab_size=12, seq_len=9, d_model=16, n_heads=2, n_layers=2, d_mlp=8,
                            layer_norm=layer_norm)
    for p in m.parameters():  # LayerNorm gains / biases away from their 1 / 0 init
        if p.dim() == 1:
            p.data.uniform_(0.5, 1.5)
    x = torch.randint(0, 12, (3, 9))
    y = x.clone()
    y[:, 6] = (y[:, 6] + 1) % 12
    with torch.no_grad():
        a, b = m(x), m(y)
    assert torch.allclose(a[:, :6], b[:, :6]) and not torch.allclose(a[:, 6:], b[:, 6:])
    # OV of layer 0, head 1: the logits a one-hot value vector of token s adds, computed by hand
    at = m.blocks[0].attn
    s = 5
    z = torch.zeros(2, at.d_head)
    emb = m.W_E[s]
    if layer_norm:  # by hand: the block's LayerNorm of the token alone; the final one's centring and gain
        ln = m.blocks[0].ln
        emb = (emb - emb.mean()) / torch.sqrt(emb.var(unbiased=False) + ln.eps) * ln.weight + ln.bias
    z[1] = at.W_V[1] @ emb
    out = at.out(z)
    if layer_norm:
        out = (out - out.mean()) * m.ln_final.weight
    direct = out @ m.W_U
    assert torch.allclose(m.ov_circuits()[0, 1, s], direct, atol=1e-5)
    assert sorted(m.components()) == ["blocks.0.attn.head0", "blocks.0.attn.head1", "blocks.0.mlp",
                                      "blocks.1.attn.head0", "blocks.1.attn.head1", "blocks.1.mlp"]


def test_build_model_and_datamodule_wire_the_task():
    dm = TaskDataModule(task="induction", batch_size=4, steps_per_epoch=2,
                        task_kwargs={"vocab": 10, "length": 12, "segment": 3, "n_eval": 5})
    model = build_model("attn_only", dm.task, d_model=8, n_heads=2, n_layers=1)
    x, y, idx = next(iter(dm.train_dataloader()))
    assert model(x).shape == (4, 11, 10) and y.shape == (4, 11) and (idx == -1).all()
    with pytest.raises(ValueError, match="n_heads=3"):
        build_model("attn_only", dm.task, d_model=8, n_heads=3)

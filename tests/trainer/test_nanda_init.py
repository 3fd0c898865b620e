"""init: nanda on the 1-layer transformer: the paper code's shapes, draw order and scales."""
import math

import pytest
import torch

from phasewatch.trainer.models import build_model
from phasewatch.trainer.tasks import build_task


def _paper_draws(seed, d, d_vocab, n_ctx, heads, d_head, d_mlp):
    """Nanda et al.'s transformers.py constructor, written out as its raw torch.randn calls."""
    torch.manual_seed(seed)
    r = lambda *s: torch.randn(*s)
    return {"W_E": (r(d, d_vocab) / math.sqrt(d)).T, "W_pos": r(n_ctx, d) / math.sqrt(d),
            "W_K": r(heads, d_head, d) / math.sqrt(d), "W_Q": r(heads, d_head, d) / math.sqrt(d),
            "W_V": r(heads, d_head, d) / math.sqrt(d), "W_O": r(d, heads * d_head) / math.sqrt(d),
            "W_in": r(d_mlp, d) / math.sqrt(d), "W_out": r(d, d_mlp) / math.sqrt(d),
            "W_U": r(d, d_vocab) / math.sqrt(d_vocab)}


def _weights(m):
    blk, at = m.blocks[0], m.blocks[0].attn
    return {"W_E": m.W_E, "W_pos": m.W_pos, "W_K": at.W_K, "W_Q": at.W_Q, "W_V": at.W_V,
            "W_O": at.W_O, "W_in": blk.W_in, "W_out": blk.W_out, "W_U": m.W_U}


@pytest.mark.parametrize("n_classes", [None, 14])  # p classes, or p + 1 like the paper's W_U
def test_weights_are_the_paper_codes_draws(n_classes):
    task = build_task("x+y", p=13, frac=0.5, seed=0)
    kw = {"n_classes": n_classes} if n_classes else {}
    torch.manual_seed(3)
    m = build_model("transformer1", task, d_model=32, n_heads=4, d_mlp=64, init="nanda", **kw)
    want = _paper_draws(3, d=32, d_vocab=14, n_ctx=3, heads=4, d_head=8, d_mlp=64)
    want["W_U"] = want["W_U"][:, : (n_classes or 13)]
    for name, w in _weights(m).items():
        assert torch.equal(w.detach(), want[name]), name
    assert not m.blocks[0].b_in.any() and not m.blocks[0].b_out.any()


def test_statistics_at_the_paper_size():
    """N(0, 1/d_model) entries (W_U: 1/(p + 1)), within 4 standard errors of the sample."""
    torch.manual_seed(0)
    task = build_task("x+y", p=113, frac=0.3, seed=0)
    m = build_model("transformer1", task, d_model=128, n_heads=4, d_mlp=512, init="nanda")
    for name, w in _weights(m).items():
        w = w.detach().double().flatten()
        std = 1 / math.sqrt(114 if name == "W_U" else 128)
        n = w.numel()
        assert abs(w.mean()) < 4 * std / math.sqrt(n), name
        assert abs(w.std() / std - 1) < 4 / math.sqrt(2 * n), name


def test_default_init_differs_and_bad_init_is_named():
    task = build_task("x+y", p=13, frac=0.5, seed=0)
    torch.manual_seed(1)
    a = build_model("transformer1", task, d_model=32, n_heads=4, d_mlp=64)
    torch.manual_seed(1)
    b = build_model("transformer1", task, d_model=32, n_heads=4, d_mlp=64, init="nanda")
    assert not torch.equal(a.W_E, b.W_E)
    with pytest.raises(ValueError, match=r"init='xavier' must be one of \('default', 'nanda'\)"):
        build_model("transformer1", task, init="xavier")

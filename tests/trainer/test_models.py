"""Models: output and hook-point shapes, exactness of the fast transformer paths, errors."""

import pytest
import torch
import torch.nn.functional as F

from phasewatch.trainer.models import MODEL_NAMES, build_model
from phasewatch.trainer.tasks import build_task

P = 13


@pytest.fixture(scope="module")
def task():
    return build_task("x+y", p=P, frac=0.5, seed=0)


def _capture(model, x):
    """Run the model with forward hooks on every nn.Identity hook point; return shapes."""
    seen, handles = {}, []
    for name, mod in model.named_modules():
        if name.split(".")[-1].startswith("hook_"):
            handles.append(mod.register_forward_hook(
                lambda m, i, o, name=name: seen.__setitem__(name, tuple(o.shape))))
    try:
        out = model(x)
    finally:
        for h in handles:
            h.remove()
    return out, seen


def test_embedding_mlp(task):
    m = build_model("embedding_mlp", task)
    out, seen = _capture(m, task.train_x[:5])
    assert out.shape == (5, P) and seen == {"hook_neurons": (5, 128)}
    tabs = m.embedding_tables()
    assert set(tabs) == {"embed_a", "embed_b"} and tabs["embed_a"].shape == (P, 32)
    assert m.unembedding_table().shape == (P, 128)
    assert set(m.components()) == {"mlp"}


def test_quadratic_mlp_equals_one_hot_math(task):
    m = build_model("quadratic_mlp", task)
    x = task.train_x[:7]
    out, seen = _capture(m, x)
    assert out.shape == (7, P) and seen == {"hook_neurons": (7, 500)}
    onehot = torch.cat([F.one_hot(x[:, 0], P), F.one_hot(x[:, 1], P)], 1).float()
    h = onehot @ m.W_in.weight.T
    torch.testing.assert_close(out, (h * h) @ m.W_out.weight.T, atol=1e-5, rtol=1e-5)
    tabs = m.embedding_tables()
    assert torch.equal(tabs["embed_b"], m.W_in.weight[:, P:].T) and tabs["embed_a"].shape == (P, 500)
    assert m.unembedding_table().shape == (P, 500)
    assert all(p.dim() == 2 for p in m.parameters())  # no biases


def test_transformer1_hooks_and_tables(task):
    m = build_model("transformer1", task)
    x = task.train_x[:4]
    for mode in ("vocab", "last", "all"):
        m.compute = mode
        out, seen = _capture(m, x)
        assert out.shape == (4, P)
        assert seen == {"hook_neurons": (4, 512), "blocks.0.attn.hook_pattern": (4, 4, 1, 3),
                        "blocks.0.attn.hook_z": (4, 4, 32), "blocks.0.hook_mlp_out": (4, 128)}
    assert m.embedding_tables()["embed"].shape == (P, 128)
    assert m.unembedding_table().shape == (P, 128)
    comps = m.components()
    assert list(comps) == [f"blocks.0.attn.head{h}" for h in range(4)] + ["blocks.0.mlp"]
    assert comps["blocks.0.attn.head2"] == (m.blocks[0].attn.hook_z, 2)
    n_params = sum(p.numel() for p in m.parameters())
    assert n_params == 14 * 128 + 3 * 128 + 4 * 128 * 128 + 2 * 128 * 512 + 512 + 128 + 128 * P


@pytest.mark.parametrize("mode, dtype, scale, tol", [
    ("vocab", torch.float32, 1.0, 1e-5), ("last", torch.float32, 1.0, 1e-5),
    ("vocab", torch.float64, 3.0, 1e-10)])
def test_transformer1_fast_equals_all_positions(mode, dtype, scale, tol):
    """Logits and every gradient match the all-positions reference on random weights
    (float64 with init_scale 3: sharp attention, large logits, still exact)."""
    t = build_task("x-y", p=17, frac=0.5, seed=1)
    torch.manual_seed(0)
    m = build_model("transformer1", t, init_scale=scale).to(dtype)
    x, y = t.train_x, t.train_y
    grads = {}
    for comp in (mode, "all"):
        m.compute = comp
        m.zero_grad()
        logits = m(x)
        F.cross_entropy(logits, y).backward()
        grads[comp] = (logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters()})
    (la, ga), (lb, gb) = grads[mode], grads["all"]
    assert la.abs().max() > 0.5 and la.dtype == dtype  # non-trivial logits
    torch.testing.assert_close(la, lb, atol=tol, rtol=tol)
    assert len(ga) == 11
    for n in ga:
        assert gb[n].abs().max() > 0, n
        torch.testing.assert_close(ga[n], gb[n], atol=tol, rtol=tol, msg=n)
    m.compute = "vocab"
    torch.testing.assert_close(m(x), m.forward_all_positions(x), atol=tol, rtol=tol)


def test_transformer1_hook_z_ablation_reaches_output(task):
    """Replacing hook_z changes the logits identically in the fast and reference paths."""
    m = build_model("transformer1", task)
    x = task.train_x
    mod, head = m.components()["blocks.0.attn.head1"]

    def ablate(module, inp, out):
        out = out.clone()
        out[:, head] = out[:, head].mean(0)
        return out

    outs = {}
    for mode in ("vocab", "all"):
        m.compute = mode
        h = mod.register_forward_hook(ablate)
        try:
            outs[mode] = m(x)
        finally:
            h.remove()
        assert not torch.allclose(outs[mode], m(x))
    torch.testing.assert_close(outs["vocab"], outs["all"], atol=1e-5, rtol=1e-5)


def test_transformer2_last_equals_all(task):
    torch.manual_seed(0)
    m = build_model("transformer2", task)
    x, y = task.train_x[:20], task.train_y[:20]
    res = {}
    for mode in ("last", "all"):
        m.compute = mode
        out, seen = _capture(m, x)
        assert out.shape == (20, P)
        assert seen == {"blocks.0.attn.hook_pattern": (20, 4, 3, 3),
                        "blocks.0.attn.hook_z": (20, 4, 3, 32),
                        "blocks.0.hook_mlp_out": (20, 3, 128),
                        "blocks.1.attn.hook_pattern": (20, 4, 1, 3),
                        "blocks.1.attn.hook_z": (20, 4, 32), "blocks.1.hook_mlp_out": (20, 128),
                        "hook_neurons": (20, 512)}
        m.zero_grad()
        logits = m(x)
        F.cross_entropy(logits, y).backward()
        res[mode] = (logits.detach(), {n: p.grad.clone() for n, p in m.named_parameters()})
    torch.testing.assert_close(res["last"][0], res["all"][0], atol=1e-5, rtol=1e-5)
    for n, g in res["last"][1].items():
        torch.testing.assert_close(g, res["all"][1][n], atol=1e-5, rtol=1e-4, msg=n)
    assert len(m.components()) == 10


def test_token_mlp_keyvalue_parity_s5():
    kv = build_task("keyvalue", n_pairs=50)
    m = build_model("mlp", kv)
    assert sum(p.numel() for p in m.parameters()) == 12480  # SCIENCE.md §4
    out, seen = _capture(m, kv.train_x)
    assert out.shape == (50, 4, 16) and seen == {"hook_neurons": (50, 64)}
    assert set(m.embedding_tables()) == {f"embed_{i}" for i in range(4)}
    onehot = F.one_hot(kv.train_x, 16).flatten(1).float()
    torch.testing.assert_close(m.layers[0](onehot), m.layers[0].weight.T[kv.train_x + m.offsets].sum(1)
                               + m.layers[0].bias, atol=1e-5, rtol=1e-5)
    par = build_task("parity", n_bits=20, k=3, n_samples=100)
    assert build_model("mlp", par, hidden=(32,))(par.train_x).shape == (50, 2)
    s5 = build_task("s5")
    m = build_model("mlp", s5, d_embed=16, hidden=(64, 64))
    assert m(s5.train_x[:3]).shape == (3, 120) and m.embedding_tables()["embed"].shape == (120, 16)
    assert build_model("transformer1", s5, d_model=32, d_mlp=64)(s5.train_x[:3]).shape == (3, 120)


def test_init_scale_multiplies_weights(task):
    torch.manual_seed(5)
    a = build_model("embedding_mlp", task)
    torch.manual_seed(5)
    b = build_model("embedding_mlp", task, init_scale=0.5)
    for (n, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(pb, 0.5 * pa, msg=n)


@pytest.mark.parametrize("name, task_kw, kwargs, field", [
    ("resnet", {}, {}, "name='resnet'"),
    ("quadratic_mlp", {"name": "s5"}, {}, "modulus"),
    ("transformer1", {"name": "keyvalue"}, {}, "out_len=4"),
    ("embedding_mlp", {}, {"vocab_size": 5}, "vocab_size=5"),
    ("embedding_mlp", {}, {"n_classes": 3}, "n_classes=3"),
    ("mlp", {}, {"seq_len": 3}, "seq_len=3"),
    ("transformer1", {}, {"n_heads": 5}, "n_heads=5"),
    ("transformer1", {}, {"compute": "fast"}, "compute='fast'"),
    ("mlp", {}, {"hidden": ()}, "hidden"),
    ("embedding_mlp", {}, {"init_scale": 0}, "init_scale=0"),
])
def test_errors_name_the_field(name, task_kw, kwargs, field):
    t = build_task(task_kw.get("name", "x+y"), p=P)
    with pytest.raises(ValueError, match=field):
        build_model(name, t, **kwargs)


def test_every_model_name_builds(task):
    assert set(MODEL_NAMES) == {"embedding_mlp", "quadratic_mlp", "transformer1", "transformer2", "mlp",
                                "attn_only"}
    for name in set(MODEL_NAMES) - {"attn_only"}:  # sequence model: tests/trainer/test_induction_task.py
        m = build_model(name, task)
        assert m(task.val_x[:2]).shape == (2, P)
        assert m.hook_neurons is not None and m.components()


def test_transformer1_vocab_path_exact_for_longer_sequences():
    """The gather path is exact for any seq_len (here 6 parity bits), float64."""
    t = build_task("parity", n_bits=6, k=2, n_samples=64)
    torch.manual_seed(0)
    m = build_model("transformer1", t, d_model=32, d_mlp=64).double()
    ref = m.forward_all_positions(t.train_x)
    for mode in ("vocab", "last"):
        m.compute = mode
        torch.testing.assert_close(m(t.train_x), ref, atol=1e-12, rtol=1e-12)

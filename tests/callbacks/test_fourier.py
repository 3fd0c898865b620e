"""FourierProbe internals against direct computation: neuron-DFT key frequencies (explicit real
Fourier basis) and Doshi et al. IPR from each built-in model's ``neuron_input_weights``."""

import math

import numpy as np
import pytest
import torch

from phasewatch.callbacks import CircuitCheckpoint, FourierProbe
from phasewatch.callbacks.fourier import fourier_basis, key_frequencies, neuron_ipr
from phasewatch.trainer.models import EmbeddingMLP, QuadraticMLP, Transformer1


def _grid(p):
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return a.flatten(), b.flatten()


def _activation_grids(p):
    """[p*p, d] float32: for each k cos(w(a+b)), cos(wa) sin(wb), cos(wa); then a dead and a
    constant neuron, a product of two different frequencies, a ReLU mix, ReLU'd noise."""
    a, b = (t.double() for t in _grid(p))
    cols = []
    for k in range(1, (p - 1) // 2 + 1):
        w = 2 * math.pi * k / p
        cols += [torch.cos(w * (a + b) + 0.3), torch.cos(w * a) * torch.sin(w * b),
                 torch.cos(w * a)]
    w1, w2 = 2 * math.pi / p, 4 * math.pi / p
    cols += [torch.zeros_like(a), torch.full_like(a, 3.0), torch.cos(w1 * a) * torch.cos(w2 * b),
             torch.relu(torch.cos(w1 * (a + b)) + torch.cos(w2 * a))]
    gen = torch.Generator().manual_seed(p)
    noise = torch.relu(torch.randn(p * p, 20, generator=gen, dtype=torch.float64) + 0.5)
    return torch.cat([torch.stack(cols, 1), noise], 1).float()


def _direct_shares(acts, p):
    """Independent: coefficients on the explicit real basis, block {0, cos_k, sin_k}^2 / all."""
    F = fourier_basis(p)
    x = acts.double().reshape(p, p, -1)
    x = x - x.mean((0, 1))
    power = torch.einsum("ia,abn,jb->nij", F, x, F).square()  # [d, p, p]
    total = power.sum((1, 2))
    blocks = []
    for k in range(1, (p - 1) // 2 + 1):
        rows = [0, 2 * k - 1, 2 * k]
        blocks.append(power[:, rows][:, :, rows].sum((1, 2)) - power[:, 0, 0])
    return torch.stack(blocks, 1) / total[:, None], total


@pytest.mark.parametrize("p", [7, 13, 59])
def test_key_frequencies_equal_projection_on_the_real_fourier_basis(p):
    acts = _activation_grids(p)
    freq, best, alive = key_frequencies(acts, p, threshold=0.85)
    shares, total = _direct_shares(acts, p)
    nk = (p - 1) // 2
    dead = total <= 1e-12 * total.max()
    assert alive.tolist() == (~dead).tolist()
    assert dead.nonzero().flatten().tolist() == [3 * nk, 3 * nk + 1]  # zero and constant
    d_best, d_arg = shares[~dead].max(1)
    np.testing.assert_allclose(best[alive].numpy(), d_best.numpy(), atol=2e-6)
    expect = torch.where(d_best >= 0.85, d_arg + 1, 0)
    assert freq[alive].tolist() == expect.tolist() and (freq[~alive] == 0).all()
    # hand-built neurons: one frequency each -> share 1; a product of frequencies 1 and 2 lies
    # in no block {0, cos_k, sin_k}^2 -> share 0; the ReLU mix and noise are unexplained
    ks = torch.arange(1, nk + 1).repeat_interleave(3)
    assert freq[:3 * nk].tolist() == ks.tolist()
    np.testing.assert_allclose(best[:3 * nk].numpy(), 1.0, atol=2e-6)
    assert best[3 * nk + 2] < 1e-6 and (freq[3 * nk + 3:] == 0).all()
    # a large common offset (mean 1e4 over a spread of ~1) leaves the float32 shares unchanged
    shifted = key_frequencies(acts + 1e4, p, threshold=0.85)
    np.testing.assert_allclose(shifted[1][alive].numpy(), best[alive].numpy(), atol=2e-3)


def _probe(model, p):
    return CircuitCheckpoint([FourierProbe(p=p, losses=False)]).run_probes(None, model)["fourier"]


def test_ipr_is_one_for_single_frequency_input_weights_and_low_for_random_ones():
    p = 59
    nk = (p - 1) // 2
    torch.manual_seed(0)
    model = QuadraticMLP(p, width=nk + 1)
    t = torch.arange(p, dtype=torch.float64)
    with torch.no_grad():  # neuron k-1: cos on operand a, phase-shifted cos on operand b
        for k in range(1, nk + 1):
            w = 2 * math.pi * k * t / p
            model.W_in.weight[k - 1] = torch.cat([torch.cos(w), 2 * torch.cos(w + 1.0)]).float()
    res = _probe(model, p)
    ipr = res.arrays["circuit/neuron_ipr"]
    assert ipr.dtype == np.float16 and ipr.shape == (nk + 1,)
    np.testing.assert_allclose(ipr[:nk], 1.0, atol=1e-3)  # float16 array
    one = neuron_ipr(model.neuron_input_weights().detach()[:, :, :nk], p)
    np.testing.assert_allclose(one.numpy(), 1.0, atol=1e-6)
    # the last neuron keeps its random init: IPR 0.067 (about 2 / nk = 0.069 for Gaussian
    # weights; 0.049-0.114 over 1500 random neurons)
    assert 0.04 < ipr[nk] < 0.12
    assert res.scalars["circuit/ipr_mean"] == pytest.approx((nk + float(ipr[nk])) / (nk + 1),
                                                            abs=1e-3)
    # a dead neuron is NaN and left out of the mean; an operand with zero weights is skipped
    with torch.no_grad():
        model.W_in.weight[nk] = 0
        model.W_in.weight[0, p:] = 0
    res = _probe(model, p)
    assert np.isnan(res.arrays["circuit/neuron_ipr"][nk])
    assert res.scalars["circuit/ipr_mean"] == pytest.approx(1.0, abs=1e-6)


def test_ipr_of_a_two_frequency_weight_vector():
    """|F| = (3, 4) on two bins: IPR = (3^4 + 4^4) / (3^2 + 4^2)^2 = 337/625."""
    p = 11
    t = torch.arange(p, dtype=torch.float64)
    w = 3 * torch.cos(2 * math.pi * 2 * t / p) + 4 * torch.sin(2 * math.pi * 5 * t / p)
    assert float(neuron_ipr(w.reshape(1, p, 1), p)) == pytest.approx(337 / 625, rel=1e-12)


def test_ipr_counts_the_constant_bin_like_doshi_et_al():
    """Doshi et al. take |rfft(w)| whole: a constant c adds |F_0| = c p. With |F| = (7p, 3p/2,
    2p) on bins 0, 2, 5 the IPR is (7^4 + 1.5^4 + 2^4) / (7^2 + 1.5^2 + 2^2)^2, and a constant
    weight vector (all on bin 0) has IPR 1."""
    p = 11
    t = torch.arange(p, dtype=torch.float64)
    w = 3 * torch.cos(2 * math.pi * 2 * t / p) + 4 * torch.sin(2 * math.pi * 5 * t / p) + 7
    want = (7**4 + 1.5**4 + 2**4) / (7**2 + 1.5**2 + 2**2) ** 2
    assert float(neuron_ipr(w.reshape(1, p, 1), p)) == pytest.approx(want, rel=1e-12)
    assert float(neuron_ipr(torch.full((1, p, 1), 0.3), p)) == pytest.approx(1.0, rel=1e-12)


def test_embedding_and_quadratic_mlp_input_weights_are_the_pre_activation():
    p = 13
    torch.manual_seed(0)
    a, b = _grid(p)
    x = torch.stack([a, b], 1)
    emb = EmbeddingMLP(p, d_embed=8, d_hidden=16).double()
    seen = {}
    emb.hidden.register_forward_hook(lambda m, i, o: seen.__setitem__("pre", o))
    emb(x)
    W = emb.neuron_input_weights().detach()
    assert W.shape == (2, p, 16)
    torch.testing.assert_close(seen["pre"], W[0][a] + W[1][b] + emb.hidden.bias, rtol=0,
                               atol=1e-12)
    quad = QuadraticMLP(p, width=16).double()
    quad.hook_neurons.register_forward_hook(lambda m, i, o: seen.__setitem__("post", o))
    quad(x)
    W = quad.neuron_input_weights().detach()
    assert W.shape == (2, p, 16)
    torch.testing.assert_close(seen["post"], (W[0][a] + W[1][b]) ** 2, rtol=0, atol=1e-12)


@pytest.mark.parametrize("compute", ["vocab", "all"])
def test_transformer1_input_weights_are_the_ov_path_under_uniform_attention(compute):
    """W_Q = 0 makes every score 0: attention 1/3 on a, b and "=" in every head, so the MLP
    pre-activation at "=" is (W[a] + W[b]) / 3 plus a constant over the grid."""
    p = 11
    torch.manual_seed(0)
    m = Transformer1(p, d_model=16, n_heads=2, d_mlp=24, compute=compute).double()
    with torch.no_grad():
        m.blocks[0].attn.W_Q.zero_()
        m.blocks[0].b_in.fill_(100.0)  # every pre-activation > 0: the ReLU passes it unchanged
    W = m.neuron_input_weights().detach()
    assert W.shape == (1, p, 24)
    a, b = _grid(p)
    seen = {}
    m.hook_neurons.register_forward_hook(lambda mod, i, o: seen.__setitem__("post", o))
    m(torch.stack([a, b], 1))
    rest = seen["post"] - (W[0][a] + W[0][b]) / 3
    torch.testing.assert_close(rest, rest[:1].expand_as(rest), rtol=0, atol=1e-10)
    assert (W[0][a] + W[0][b]).std(0).min() > 0.1  # the token part is not negligible

"""LLC estimator: a regular model with d identifiable parameters has lambda = d/2; the
localization term shrinks the estimate by the analytic factor c / (c + gamma)."""

import math
from types import SimpleNamespace

import pytest
import torch

from phasewatch.callbacks import LLCProbe, estimate_llc
from phasewatch.callbacks.circuit import ProbeContext
from phasewatch.callbacks.llc import fitted_least_squares

N, D_IN = 1000, 10  # d = 11 parameters (10 weights + bias)


def _fitted_linear_regression(seed=0):
    return fitted_least_squares(N, D_IN, seed)


def _mse(model, batch):
    return ((model(batch[0])[:, 0] - batch[1]) ** 2).mean()


def test_regular_model_gives_d_over_2_within_15_percent():
    lin, x, y = _fitted_linear_regression()
    est = estimate_llc(lin, _mse, [(x, y)], n=N, lr=3e-4, localization=1.0, chains=4,
                       draws=400, burn_in=100)
    d = D_IN + 1
    assert est.llc == pytest.approx(d / 2, rel=0.15)
    assert len(est.chains) == 4 and 0 < est.std < 0.15 * d / 2  # the spread over chains is reported
    assert est.nbeta == pytest.approx(N / math.log(N))


def test_localization_shrinks_by_the_analytic_factor_and_model_is_untouched():
    lin, x, y = _fitted_linear_regression(seed=1)
    before = [p.detach().clone() for p in lin.parameters()]
    nbeta = N / math.log(N)
    curvature = 2.0 * float(x.var(0).mean())  # Hessian of the mean squared error ~ 2 Cov(x)
    gamma = nbeta * curvature  # posterior precision doubles: E = d/2 * c / (c + gamma) = d/4
    est = estimate_llc(lin, _mse, [(x, y)], n=N, lr=3e-4, localization=gamma, chains=4,
                       draws=400, burn_in=100)
    assert est.llc == pytest.approx((D_IN + 1) / 4, rel=0.15)
    assert all(torch.equal(a, b) for a, b in zip(before, lin.parameters()))


def test_llc_probe_uses_the_module_loss_and_logs_the_spread():
    lin, x, y = _fitted_linear_regression(seed=2)
    module = SimpleNamespace(loss_fn=lambda out, target: ((out[:, 0] - target) ** 2).mean())
    probe = LLCProbe(x=x, y=y, batch_size=N, lr=3e-4, localization=1.0, chains=3, draws=300,
                     burn_in=100)
    res = probe(lin, ProbeContext(None, module, 0))
    assert res.scalars["llc/lambda_hat"] == pytest.approx((D_IN + 1) / 2, rel=0.15)
    assert res.arrays["llc/chains"].shape == (3,) and res.scalars["llc/std"] > 0
    with pytest.raises(ValueError, match="burn_in"):
        LLCProbe(draws=10, burn_in=10)
    with pytest.raises(ValueError, match="lr"):
        estimate_llc(lin, _mse, [(x, y)], n=N, lr=0.0)


def test_docstring_example():
    import doctest

    import phasewatch.callbacks.llc as mod
    assert doctest.testmod(mod).failed == 0

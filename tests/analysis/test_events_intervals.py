"""Events, classes and intervals checked against numbers derived independently: analytic
crossings of piecewise-linear curves, a reach-then-fall curve, a plateau, a synthetic oracle
that is NOT the fitting model (logistic in linear steps, AR(1) noise, log-spaced evaluations),
evaluation grids shifted by a few steps, float32 loss noise and log-spaced per-example data."""
import math

import numpy as np
import pytest

from phasewatch.analysis.analyzer import AnalysisConfig, analyze_trace
from phasewatch.analysis.events import LOSS_FLOOR, detect_spikes, plateau_argmax, threshold_event
from phasewatch.analysis.memorization import cartography, forgetting_events, uniform_rows
from phasewatch.analysis.memtrace import MemoryTrace

CFG = AnalysisConfig(phases=False, memorization=False)


def ramp(s, a, b, lo=0.0, hi=1.0):
    """Piecewise linear: lo before a, hi after b, linear between."""
    return lo + (hi - lo) * np.clip((np.asarray(s, float) - a) / (b - a), 0.0, 1.0)


@pytest.mark.parametrize("grid", [np.arange(3, 4000, 20), np.unique(np.geomspace(1, 4000, 90).astype(int))])
@pytest.mark.parametrize("thr", [0.5, 0.9, 0.99])
def test_crossing_is_interpolated_between_evaluations(grid, thr):
    a, b = 1000.0, 2500.0          # 0 until a, then a straight line: crossing of thr at a + thr (b - a)
    line = np.maximum(grid - a, 0.0) / (b - a)
    e = threshold_event(grid, line, thr, name="generalization", signal="val/acc")
    t = a + thr * (b - a)
    assert e.step == round(t)
    lo, hi = e.evidence["bracket"]
    assert lo < t <= hi and lo == grid[grid < t][-1] and hi == grid[grid >= t][0]
    assert e.low <= lo and hi <= e.high           # never narrower than the bracketing evaluations


def test_reach_then_fall_keeps_memorization_and_adds_the_fall():
    s = np.arange(0, 3000, 10)
    train = np.where(s < 1000, ramp(s, 0, 100), ramp(s, 1000, 1200, 1.0, 0.65))
    val = ramp(s, 100, 300)
    res = analyze_trace(MemoryTrace({"train/acc": (s, train), "val/acc": (s, val)}), CFG)
    mem, fall = res.event("memorization"), res.event("train_acc_fall")
    assert mem.step == 99 and mem.evidence["fell_later"]          # 0.99 of the 0 -> 1 ramp
    assert fall.step == round(1000 + (1 - 0.89) / 0.35 * 200)     # below 0.99 - 0.1, stays
    assert fall.evidence["final"] == pytest.approx(0.65) and fall.evidence["flag"] == "inversion"
    assert res.run_class == "comprehension" and "inversion" in res.flags
    assert "inconsistent" not in res.class_reason and "inversion" in res.class_reason
    t_val = 100 + 0.99 * 200
    assert res.verdicts[0]["gap"] == pytest.approx(round(t_val) / 99)
    # the same fall without generalization: memorized, then forgotten
    res = analyze_trace(MemoryTrace({"train/acc": (s, train), "val/acc": (s, 0.1 * val)}), CFG)
    assert res.run_class == "memorization" and "forgetting" in res.flags
    assert res.event("memorization").step == 99


def test_best_val_plateau_spans_the_plateau_and_can_be_the_last_evaluation():
    s = np.arange(0, 4020, 20)
    rng = np.random.default_rng(0)
    val = np.minimum(ramp(s, 1000, 3000, 0.0, 1.2), 0.95) + rng.uniform(-5e-4, 5e-4, s.size)
    e = plateau_argmax(s, val, name="best_val_plateau", signal="val/acc")
    flat = s[s >= 1000 + 2000 * 0.95 / 1.2]                    # where the noise-free curve is flat
    assert e.low <= flat[0] + 40 and e.high == s[-1] and e.low <= e.step <= e.high
    assert e.high - e.low >= 0.9 * (flat[-1] - flat[0])
    rising = ramp(s, 0, 4000)                                  # maximum at the very end
    assert plateau_argmax(s, rising, name="b", signal="v").step == s[-1]


def _oracle(seed, phi=0.99, sd=0.03, t0=1500.0, tau=150.0, lo=0.05, hi=1.0, n=160, T=5000):
    """Logistic in LINEAR steps (the fit is a logistic in log steps), AR(1) noise per step
    (correlation 0.99 per step: ~0.5 between neighbouring evaluations near t0), log-spaced evaluations."""
    rng = np.random.default_rng(seed)
    innov = rng.normal(size=T + 1) * sd * math.sqrt(1 - phi ** 2)
    e = np.empty(T + 1)
    e[0] = rng.normal() * sd
    for k in range(1, T + 1):
        e[k] = phi * e[k - 1] + innov[k]
    s = np.unique(np.geomspace(10, T, n).astype(int))
    return s, lo + (hi - lo) / (1 + np.exp(-(s - t0) / tau)) + e[s]


def test_measurement_intervals_cover_on_an_autocorrelated_oracle():
    def truth(frac, t0=1500.0, tau=150.0):
        return t0 + tau * math.log(frac / (1 - frac))
    cfg = CFG.with_threshold(0.9)
    hits = {"generalization": 0, "onset": 0, "midpoint": 0, "completion": 0}
    n = 40
    for seed in range(n):
        s, y = _oracle(seed)
        res = analyze_trace(MemoryTrace({"train/acc": (s, np.ones(s.size)), "val/acc": (s, y)}), cfg)
        e = res.event("generalization")
        hits["generalization"] += e.low <= truth((0.9 - 0.05) / 0.95) <= e.high
        for key, frac in (("onset", 0.1), ("midpoint", 0.5), ("completion", 0.9)):
            e = res.event(f"generalization_{key}")
            hits[key] += e.low <= truth(frac) <= e.high
    cover = {k: v / n for k, v in hits.items()}
    assert min(cover.values()) >= 0.9, cover                   # nominal 95 %


def test_class_does_not_hinge_on_where_the_evaluations_fall():
    """t_train ~77 and t_val ~410 (ratio 5.3, cutoff 5) with an evaluation every 10 steps:
    dated at the first evaluation at or after the crossing, the ratio moves between 4.7 and
    5.8 as the grid shifts; interpolated, the class does not move."""
    def curves(s):
        return 1 / (1 + np.exp(-(s - 40) / 8)), 1 / (1 + np.exp(-(s - 373.6) / 8))
    t_tr, t_va = 40 + 8 * math.log(99), 373.6 + 8 * math.log(99)
    classes, old = set(), set()
    for offset in range(10):
        s = np.arange(offset, 1500, 10)
        tr, va = curves(s)
        res = analyze_trace(MemoryTrace({"train/acc": (s, tr), "val/acc": (s, va)}), CFG)
        classes.add(res.run_class)
        assert abs(res.event("memorization").step - t_tr) < 4 and abs(res.event("generalization").step - t_va) < 4
        old.add(s[s >= t_va][0] / s[s >= t_tr][0] >= 5)           # the evaluation-step rule
    assert classes == {"grokking"} and old == {True, False}


def test_liu_verdict_is_shown_beside_the_configured_one():
    s = np.arange(0, 5000, 10)
    train = ramp(s, 0, 200, 0.0, 1.0)
    val = np.where(s < 1500, ramp(s, 100, 300, 0.0, 0.92), ramp(s, 1500, 1700, 0.92, 1.0))
    res = analyze_trace(MemoryTrace({"train/acc": (s, train), "val/acc": (s, val)}), CFG)
    v99, v90 = res.verdicts
    assert (v99["threshold"], v90["threshold"]) == (0.99, 0.9)
    t99 = (0.99 * 200, 1500 + (0.99 - 0.92) / 0.08 * 200)       # 198 and 1675: ratio 8.5
    t90 = (0.9 * 200, 100 + 0.9 / 0.92 * 200)                   # 180 and 296: ratio 1.6
    assert (v99["t_train"], v99["t_val"]) == tuple(round(t) for t in t99) and v99["class"] == "grokking"
    assert (v90["t_train"], v90["t_val"]) == tuple(round(t) for t in t90) and v90["class"] == "comprehension"
    assert "t_val / t_train >= 5" in v99["rule"] and "0.99" in v99["rule"]
    assert "threshold 0.9 (Liu et al.): comprehension" in res.summary()


def test_slingshot_ignores_float32_noise_at_the_floor():
    s = np.arange(0, 4000, 20)
    rng = np.random.default_rng(0)
    loss = 10 ** rng.uniform(-8, -6.5, s.size)          # float32 rounding noise: decades of wobble
    assert detect_spikes(s, loss, signal="train/loss") == []
    loss[100] = 2e-3                                    # a real slingshot from that floor
    ev = detect_spikes(s, loss, signal="train/loss")
    assert [e.step for e in ev] == [2000]
    assert ev[0].evidence["decades_above_median"] == pytest.approx(math.log10(2e-3 / LOSS_FLOOR))


def test_cartography_and_forgetting_weight_training_time_not_evaluations():
    steps = np.r_[np.arange(0, 10), np.arange(100, 1001, 100)]   # dense early, then every 100
    correct = np.r_[np.tile([1, 0], 5), np.ones(10)].astype(int)[:, None]
    p = np.r_[np.linspace(0.1, 0.2, 10), np.full(10, 0.9)][:, None]
    # forgetting: on a uniform grid at the largest gap (100) the early flicker is one state
    grid, rows = uniform_rows(steps, correct)
    assert grid.tolist() == list(range(0, 1001, 100))
    assert forgetting_events(rows).tolist() == [0] and forgetting_events(correct).tolist() == [5]
    # cartography: means over training time (trapezoid), not over the 20 evaluations
    cart = cartography(p, correct, steps)
    dur = steps[-1] - steps[0]
    conf = np.sum((p[1:, 0] + p[:-1, 0]) / 2 * np.diff(steps)) / dur
    assert cart["confidence"][0] == pytest.approx(conf) and conf > 0.8 > p.mean()
    var = np.sum(((p[1:, 0] - conf) ** 2 + (p[:-1, 0] - conf) ** 2) / 2 * np.diff(steps)) / dur
    assert cart["variability"][0] == pytest.approx(math.sqrt(var))

"""Early prediction: the fixed rule on synthetic early traces with known outcomes, and the
leave-one-out evaluation on run directories (real SQLite stores)."""
from __future__ import annotations

import numpy as np
import pytest

from phasewatch.analysis import TraceWriter
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.predict import (EarlyRule, early_features, evaluate_runs, format_eval_table,
                                         predict_early)

S = np.arange(0, 4001, 20)


def trace(kind: str, t_mem=140, t_gen=2400, norm=True, upto=4000):
    s = S[S <= upto]
    tr = np.minimum(s / t_mem, 1.0)
    loss = 4 * np.exp(-s / (t_mem / 3)) + 1e-4
    va = np.zeros(s.size)
    sq = 3800 * (1 + 0.0002 * s)                                   # decay holds the norm near init
    if kind == "grok":
        va = 1 / (1 + np.exp(-(s - t_gen) / 60.0))
    elif kind == "memorize":
        sq = 3800 * (1 + 0.004 * s)                                # no decay: the norm inflates
    elif kind == "confuse":
        tr, loss, sq = 0.02 + 0 * s, 4.0 + 0.01 * np.sin(s), 3800 * np.exp(-s / 100)
    elif kind == "comprehend":
        va = np.minimum(s / 300, 1.0)
    series = {"train/acc": (s, tr), "val/acc": (s, va), "train/loss": (s, loss)}
    if norm:
        series["weights/sum_sq"] = (s, sq)
    return MemoryTrace(series)


@pytest.mark.parametrize("kind, generalizes", [("grok", True), ("memorize", False), ("confuse", False),
                                               ("comprehend", True)])
def test_rule_on_known_outcomes(kind, generalizes):
    p = predict_early(trace(kind), horizon=400)
    assert p.generalizes is generalizes, p.reason
    assert (p.t_gen is not None) is generalizes


def test_features_use_only_the_horizon():
    full, early = early_features(trace("grok"), 400), early_features(trace("grok", upto=400), 400)
    assert full == early
    assert early["t_mem"] == 140 and early["norm_ratio"] == pytest.approx(1.08)
    assert early["loss_drop"] > 3 and early["val_acc"] == pytest.approx(0.0, abs=1e-6)


def test_when_estimates():
    p = predict_early(trace("grok"), 400, EarlyRule(gen_ratio=17))
    assert p.t_gen == 2380                                       # t_mem 140 x 17
    p = predict_early(trace("comprehend"), 200)                   # val at 0.67, rising 1/300 per step
    assert p.generalizes and abs(p.t_gen - 300) <= 20


def test_without_norm_falls_back_to_the_loss_spectrum():
    p = predict_early(trace("grok", norm=False), 400)
    assert "oscillation" in p.reason and p.features["norm_ratio"] is None


@pytest.mark.parametrize("kwargs, bad", [({"max_norm_ratio": 0}, "max_norm_ratio"), ({"gen_ratio": 0.5}, "gen_ratio")])
def test_bad_rule(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        EarlyRule(**kwargs)


def test_bad_horizon():
    with pytest.raises(ValueError, match="horizon"):
        early_features(trace("grok"), 10)


def test_evaluate_runs_leave_one_out(tmp_path):
    dirs = {}
    for label, kind, t_gen in (("g1", "grok", 2000), ("g2", "grok", 3000), ("g3", "grok", 2800),
                               ("m", "memorize", None), ("c", "confuse", None)):
        t = trace(kind, t_gen=t_gen or 2400)
        with TraceWriter(tmp_path / label) as w:
            for n in t.names():
                s, v = t.series(n)
                for a, b in zip(s, v):
                    w.log_scalars({n: float(b)}, int(a))
        dirs[label] = tmp_path / label
    rows = evaluate_runs(dirs, horizon=400)
    by = {r["label"]: r for r in rows}
    assert all(r["correct"] for r in rows)
    # g1's timing ratio comes from g2 and g3 only (t_gen / t_mem, t_mem = 140)
    t_gen_g2, t_gen_g3 = by["g2"]["t_gen"], by["g3"]["t_gen"]
    assert by["g1"]["gen_ratio"] == pytest.approx(np.median([t_gen_g2 / 140, t_gen_g3 / 140]))
    table = format_eval_table(rows, 400, 4000)
    assert "whether: 5/5 correct (100%)" in table and "| g1 | grokking |" in table

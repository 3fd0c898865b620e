"""Early prediction: the rule and its features, the scoring (Wilson intervals, baselines, tuning),
``phasewatch predict``, and the stored evaluation conditions (real config-A-variant traces made
by ``scripts/eval_predictor.py --regenerate``)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from run_writer import write_run

from phasewatch.analysis.cli import main as cli
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.predict import EarlyRule, early_features, predict_early, rule_for
from phasewatch.analysis.predict_eval import (condition_rows, load_long_csv, score_rows, truth, tune_rule,
                                              wd_baseline, wilson)

DATA = Path(__file__).parent / "data" / "predict"
CONDITIONS = json.loads((DATA / "conditions.json").read_text())
S = np.arange(0, 4001, 20)


def synthetic(kind: str, upto: int = 4000, val_peak: int = 500) -> MemoryTrace:
    """Memorize by ~140; val loss peaks at ``val_peak`` and falls ('grok') or keeps rising."""
    s = S[S <= upto]
    tr = np.minimum(s / 140, 1.0)
    loss = 4 * np.exp(-s / 50) + 1e-4
    if kind == "grok":
        vloss = 4 + 8 * np.exp(-((s - val_peak) / 250.0) ** 2) * (s < val_peak) + \
            8 * np.exp(-(s - val_peak) / 600.0) * (s >= val_peak)
        va = 1 / (1 + np.exp(-(s - 2500) / 60.0))
    elif kind == "memorize":
        vloss, va = 4 + 8 * (1 - np.exp(-s / 300)), 0.01 + 0 * s
    else:  # confusion: nothing is learnt
        tr, loss, vloss, va = 0.02 + 0 * s, 4.0 + 0.01 * np.sin(s), 4.0 + 0 * s, 0.02 + 0 * s
    return MemoryTrace({"train/acc": (s, tr), "val/acc": (s, va), "train/loss": (s, loss),
                        "val/loss": (s, vloss), "weights/sum_sq": (s, 3800 * (1 + 1e-4 * s))})


RULE = EarlyRule(conditions=(("val_loss_fall", ">=", 0.05),), gen_ratio=5.0)


# --- the rule ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind, generalizes", [("grok", True), ("memorize", False), ("confuse", False)])
def test_rule_on_known_outcomes(kind, generalizes):
    p = predict_early(synthetic(kind), horizon=800, rule=RULE)
    assert p.generalizes is generalizes, p.reason
    assert (p.t_gen is not None) is generalizes


def test_features_use_only_the_horizon():
    assert early_features(synthetic("grok"), 800) == early_features(synthetic("grok", upto=800), 800)


def test_feature_values_from_an_independent_computation():
    f = early_features(synthetic("grok"), 800)
    s = S[S <= 800]
    vloss = synthetic("grok").series("val/loss")[1][: s.size]
    # decades off the peak of the 3-point running median of log10 val loss, to the last three's median
    lv = np.log10(vloss)
    med3 = [np.median(lv[i - 1:i + 2]) for i in range(1, lv.size - 1)]
    assert f["val_loss_fall"] == pytest.approx(max(med3) - np.median(lv[-3:]), abs=1e-12)
    assert f["t_val_peak"] == s[1 + int(np.argmax(med3))] and abs(f["t_val_peak"] - 500) <= 20
    assert f["t_mem"] == round(0.99 * 140)   # train acc s/140 crosses 0.99 at 138.6
    assert f["norm_ratio"] == pytest.approx(1 + 1e-4 * 800)


def test_timing_is_gen_ratio_times_the_val_loss_peak():
    p = predict_early(synthetic("grok", val_peak=600), 800, RULE)
    assert p.t_gen == round(5 * p.features["t_val_peak"], -1) and abs(p.t_gen - 5 * 600) <= 100
    p = predict_early(synthetic("grok"), 3000, RULE)                  # already generalized: seen
    assert p.t_gen == truth(synthetic("grok"), 4000)


def test_lightning_style_names_are_resolved():
    t = synthetic("grok")
    renamed = MemoryTrace({{"train/acc": "train_acc", "val/acc": "val_acc", "train/loss": "train_loss",
                            "val/loss": "val_loss"}.get(n, n): t.series(n) for n in t.names()})
    assert early_features(renamed, 800) == early_features(t, 800)


def test_missing_feature_says_cannot_tell():
    t = synthetic("grok")
    bare = MemoryTrace({n: t.series(n) for n in ("train/acc", "val/acc", "train/loss")})
    p = predict_early(bare, 800, RULE)
    assert p.generalizes is None and "val_loss_fall" in p.reason


@pytest.mark.parametrize("kwargs, bad", [({"conditions": (("nope", ">=", 1),)}, "nope"),
                                         ({"conditions": (("osc", ">", 1),)}, "osc"),
                                         ({"gen_ratio": 0.5}, "gen_ratio")])
def test_bad_rule(kwargs, bad):
    with pytest.raises(ValueError, match=bad):
        EarlyRule(**kwargs)


def test_rule_for_picks_the_nearest_tuned_horizon():
    from phasewatch.analysis.predict import TUNED
    horizons = sorted(r.tuned_horizon for r in TUNED)
    assert [rule_for(h).tuned_horizon for h in horizons] == horizons
    assert rule_for(10 ** 6).tuned_horizon == horizons[-1] and rule_for(60).tuned_horizon == horizons[0]


def test_bad_horizon():
    with pytest.raises(ValueError, match="horizon"):
        early_features(synthetic("grok"), 10)


# --- scoring ------------------------------------------------------------------------------------

@pytest.mark.parametrize("k, n", [(9, 10), (0, 7), (17, 22), (22, 22), (3, 40)])
def test_wilson_matches_the_closed_form(k, n):
    z = 1.959963984540054                       # the 97.5 % normal quantile
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)
    assert wilson(k, n) == pytest.approx((lo, hi), abs=1e-9)


def test_wilson_known_value():
    lo, hi = wilson(9, 10)                      # textbook: 9/10 -> [0.596, 0.982]
    assert round(lo, 3) == 0.596 and round(hi, 3) == 0.982


def test_wd_baseline():
    assert wd_baseline(1.0, {"loss_drop": 2.0}) and not wd_baseline(0.0, {"loss_drop": 2.0})
    assert not wd_baseline(1.0, {"loss_drop": 0.1})


def _rows(kinds):
    rows = []
    for kind, peak in kinds:
        t = synthetic(kind, val_peak=peak)
        rows.append({"label": f"{kind}{peak}", "horizon": 800, "t_gen": truth(t, 4000), "weight_decay": 1.0,
                     "features": early_features(t, 800)})
    return rows


def test_tuning_separates_and_scores_against_baselines():
    rows = _rows([("grok", 400), ("grok", 500), ("grok", 600), ("memorize", 0), ("confuse", 0)])
    rule = tune_rule(rows)
    assert all(predict_early(None, 800, rule, features=r["features"]).generalizes is (r["t_gen"] is not None)
               for r in rows)
    # gen_ratio: the median t_gen / t_ref of the generalizing rows (t_ref: their val-loss peaks)
    assert rule.gen_ratio == pytest.approx(
        np.median([r["t_gen"] / r["features"]["t_val_peak"] for r in rows[:3]]), abs=0.01)
    summary = score_rows(rows, rule, majority=True)
    assert summary["predictor"]["k"] == 5
    assert summary["majority class"]["k"] == 3               # three of five generalize
    assert summary["wd > 0 and loss fell"]["k"] == 4         # wrong only on the memorizing one


# --- the CLI ------------------------------------------------------------------------------------

@pytest.fixture
def stored_run(tmp_path):
    return str(write_run(tmp_path / "A", load_long_csv(DATA / "A.csv.gz")))


def test_cli_text(stored_run, capsys):
    assert cli(["predict", stored_run, "--horizon", "400"]) == 0
    out = capsys.readouterr().out
    p = predict_early(load_long_csv(DATA / "A.csv.gz"), 400)
    verdict = "generalizes" if p.generalizes else "does not generalize"
    assert out.startswith(f"{stored_run}: {verdict}") and "rule:" in out and "features:" in out


def test_cli_json_lines(stored_run, capsys):
    assert cli(["predict", stored_run, stored_run, "--horizon", "600", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    d = json.loads(lines[0])
    p = predict_early(load_long_csv(DATA / "A.csv.gz"), 600)
    assert d["generalizes"] == p.generalizes and d["t_gen"] == p.t_gen and d["horizon"] == 600
    assert d["features"]["t_mem"] == p.features["t_mem"] and d["rule"]["conditions"]
    assert d["note"] and "tuned at horizon" in d["note"]        # 600 is not a tuned horizon


@pytest.mark.parametrize("args, says", [(["{run}", "--horizon", "30"], "--horizon 30"),
                                        (["{run}", "--horizon", "99999"], "reaches step"),
                                        (["{tmp}/missing", "--horizon", "400"], "does not exist"),
                                        (["{empty}", "--horizon", "400"], "none of train/acc")])
def test_cli_errors_are_one_line_exit_2(args, says, stored_run, tmp_path, capsys):
    empty = write_run(tmp_path / "empty", MemoryTrace({"other/x": (S, 0 * S)}))
    argv = [a.format(run=stored_run, tmp=tmp_path, empty=empty) for a in args]
    assert cli(["predict", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and len(err.splitlines()) == 1 and "Traceback" not in err


# --- the stored evaluation ----------------------------------------------------------------------

def test_tuning_and_test_conditions_are_disjoint():
    tuning, test = CONDITIONS["tuning"], CONDITIONS["test"]
    assert not set(tuning) & set(test)
    as_sets = {json.dumps(c, sort_keys=True) for c in tuning.values()}
    assert not as_sets & {json.dumps(c, sort_keys=True) for c in test.values()}
    assert len(test) >= 20
    assert all((DATA / f"{label}.csv.gz").exists() for label in tuning)   # the rule saw all of them
    assert sum((DATA / f"{label}.csv.gz").exists() for label in test) >= 10


@pytest.mark.parametrize("label", ["A-wd0.1", "A-frac0.35", "A-mul", "A-p71"])
@pytest.mark.parametrize("horizon", [400, 800])
def test_shipped_rule_on_held_out_traces(label, horizon):
    """Test-set traces (never seen by the tuning): the prediction is the outcome the analyzer
    reads off the full trace (A-wd0.1: weight decay > 0 yet no generalization in the budget)."""
    assert label in CONDITIONS["test"]
    trace = load_long_csv(DATA / f"{label}.csv.gz")
    assert predict_early(trace, horizon).generalizes is (truth(trace, CONDITIONS["budget"]) is not None)


def test_out_of_sample_score_not_below_the_baselines():
    tuning = condition_rows(CONDITIONS, "tuning", DATA, 800)
    majority = sum(r["t_gen"] is not None for r in tuning) * 2 >= len(tuning)
    test = condition_rows(CONDITIONS, "test", DATA, 800)
    summary = score_rows(test, rule_for(800), majority)
    k = {m: v["k"] for m, v in summary.items() if m != "timing"}
    assert k["predictor"] >= k["wd > 0 and loss fell"] and k["predictor"] > k["majority class"]


@pytest.mark.parametrize("module", ["predict", "predict_eval"])
def test_docstring_examples(module):
    import doctest
    import importlib
    mod = importlib.import_module(f"phasewatch.analysis.{module}")
    assert doctest.testmod(mod, optionflags=doctest.ELLIPSIS).failed == 0

"""Per-example memorization against synthetic known answers (Nanda phases: test_phases.py)."""
import math

import numpy as np
import pytest

from phasewatch.analysis.analyzer import AnalysisConfig, analyze_trace
from phasewatch.analysis.memorization import (auroc, forgetting_events, memorization_from_trace,
                                              memorized_at, memorized_bits, o1_onset)
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.synthetic_examples import corrupted_examples, random_target_examples


def test_elementary_per_example_functions():
    steps = np.array([0, 10, 20, 30])
    c = np.array([[0, 1, 1], [1, 1, 0], [0, 1, 1], [1, 1, 0]])
    assert memorized_at(steps, c).tolist() == [30.0, 0.0, math.inf]
    assert forgetting_events(c).tolist() == [1, 0, 2]
    assert auroc(np.array([0.1, 0.2, 0.9, 0.8]), np.array([0, 0, 1, 1])) == 1.0
    assert auroc(np.array([1.0, 1.0]), np.array([1, 0])) == 0.5
    assert memorized_bits(np.array([[0.0, math.log(16) * 4]]), 16, 4).tolist() == [16.0]
    o1 = o1_onset(np.arange(10) * 10, np.array([0, 0, 0, .05, .2, .3, .4, .6, .95, 1]))
    assert (o1["onset"], o1["t50"], o1["t90"]) == (40, 70, 80)


@pytest.mark.parametrize("seed", range(4))
def test_corrupted_label_o1_o3_cartography_match_truth(seed):
    t, truth = corrupted_examples(seed)
    res = analyze_trace(t)
    m = res.memorization
    q = m["o3"]["corrupted"]
    true_tau = truth["tau"][truth["corrupted"]]
    for key, qq in (("q10", 0.1), ("q50", 0.5), ("q90", 0.9)):
        assert abs(q[key] - np.quantile(true_tau, qq)) <= 20 + 1e-9  # one evaluation (every 20)
    for key in ("t50", "t90"):   # the subset curve also counts chance flips: 0.05 decades
        assert abs(math.log10(m["o1"][key] / truth[key])) <= 0.05
    # consistent with the logged per-subset accuracy curve
    s, acc_c = t.series("train/acc_corrupted")
    assert m["o1"]["t50"] == s[np.argmax(acc_c >= 0.5)] and m["o1"]["t90"] == s[np.argmax(acc_c >= 0.9)]
    assert m["o1"]["onset"] <= m["o1"]["t50"] <= m["o1"]["t90"]
    # O1 onset consistent with the per-subset accuracy curve: baseline + 0.1 crossed there
    sa = m["subset_acc"]
    assert m["forgetting"]["corrupted"]["mean_events"] > m["forgetting"]["clean"]["mean_events"]
    assert m["cartography"]["auroc_low_confidence_vs_corrupted"] > 0.95
    assert m["o4"]["peak_gap"] > 0.9 and m["o4"]["fall_step"] is not None
    assert res.event("corrupted_memorization_t50").step == m["o1"]["t50"]
    best = res.event("best_val_plateau")
    assert (best.step, best.low, best.high) == (m["o2"]["step"], m["o2"]["low"], m["o2"]["high"])
    assert best.low <= best.step <= best.high
    F = m["o3"]["F"]
    assert F["corrupted"][-1] == 1.0 and F["corrupted"][0] == 0.0
    assert sa["corrupted"][-1] == 1.0


def test_random_target_bits_per_parameter():
    t, truth = random_target_examples(0)
    cap = memorization_from_trace(t)["capacity"]
    assert cap["bits_final"] == pytest.approx(truth["bits_final"], rel=1e-4)
    assert cap["bits_per_param_final"] == pytest.approx(truth["bits_per_param"], rel=1e-4)
    assert cap["curve"][0][1] < cap["curve"][-1][1]


def test_per_example_mismatched_shapes_raise_naming_the_array():
    s = np.array([0, 10])
    t = MemoryTrace(arrays={"examples/train/correct": (s, np.ones((2, 5))),
                            "examples/train/corrupted": (np.array([0]), np.ones((1, 4)))})
    with pytest.raises(ValueError, match="examples/train/corrupted"):
        memorization_from_trace(t)
    assert "insufficient" in memorization_from_trace(MemoryTrace())


def test_capacity_from_cli_options_when_meta_is_missing(make_run_dir, capsys):
    import json
    from phasewatch.analysis.cli import main
    t, truth = random_target_examples(1)
    t.meta.clear()
    run = make_run_dir(t)
    assert main(["analyze", str(run), "--random-targets", "--vocab", "16", "--out-len", "4",
                 "--n-params", "5000"]) == 0
    cap = json.loads((run / "analysis" / "analysis.json").read_text())["memorization"]["capacity"]
    assert cap["bits_final"] == pytest.approx(truth["bits_final"], rel=1e-3)
    assert cap["bits_per_param_final"] == pytest.approx(truth["bits_per_param"], rel=1e-3)


def test_first_memorized_sees_undone_memorization():
    from phasewatch.analysis.memorization import first_memorized
    steps = np.arange(8) * 10
    c = np.array([[0, 0], [1, 0], [1, 0], [1, 1], [0, 1], [0, 1], [0, 1], [0, 1]])
    assert first_memorized(steps, c, k=3).tolist() == [10.0, 30.0]
    assert memorized_at(steps, c).tolist() == [math.inf, 30.0]
    t = MemoryTrace(arrays={"examples/train/correct": (steps, c)})
    fm = memorization_from_trace(t)["o3"]["first_memorized"]["all"]
    assert fm["memorized"] == 2 and fm["undone"] == 1

"""Nanda phases: the segmenter against independent computations and a smooth, autocorrelated oracle.

The oracle (``synthetic_examples.nanda_trace``) is not the segmenter's model: its measures
bend along logistic corners and carry AR(1) noise; its true boundaries are the corner
centres.
"""
import itertools

import numpy as np
import pytest
from phase_checks import drop_one_violations, signature_holds_on_samples, without_probe

from phasewatch.analysis.analyzer import analyze_trace
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.phases import nanda_phases_from_trace
from phasewatch.analysis.segments import (_partition_tables, _starts, best_partitions, segment_costs,
                                          select_segments)
from phasewatch.analysis.synthetic_examples import nanda_trace, score_phase_oracle


def test_segment_costs_match_polyfit_and_skip_missing_samples():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(0, 10, 15))
    Y = rng.normal(size=(15, 2))
    Y[4, 1] = np.nan
    C = segment_costs(x, Y)
    for a, b in ((0, 15), (2, 9), (3, 6)):
        want = 0.0
        for j in range(2):
            ok = np.isfinite(Y[a:b, j])
            xs, ys = x[a:b][ok], Y[a:b, j][ok]
            want += float(np.sum((np.polyval(np.polyfit(xs, ys, 1), xs) - ys) ** 2))
        assert C[a, b] == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_best_partition_is_the_brute_force_optimum():
    rng = np.random.default_rng(1)
    x = np.arange(16.0)
    C = segment_costs(x, rng.normal(size=(16, 3)))
    got = best_partitions(C, 4, 3)
    for k in (2, 3, 4):
        brute = min((sum(C[a, b] for a, b in zip((0, *c), (*c, 16))), list(c))
                    for c in itertools.combinations(range(3, 14), k - 1)
                    if all(b - a >= 3 for a, b in zip((0, *c), (*c, 16))))
        assert got[k][1] == pytest.approx(brute[0]) and got[k][0] == brute[1]


def test_batched_costs_and_partitions_equal_one_matrix_at_a_time():
    """The bootstrap segments its replicates in batches: each must get what it gets alone."""
    rng = np.random.default_rng(2)
    x = np.sort(rng.uniform(0, 5, 14))
    Y = rng.normal(size=(6, 14, 3))
    Y[:, 5, 2] = np.nan  # the same missing cell in every replicate, as in the bootstrap
    C = segment_costs(x, Y)
    for b in range(6):
        np.testing.assert_array_equal(C[b], segment_costs(x, Y[b]))
    F, arg = _partition_tables(C, 3, 3)
    starts = _starts(arg, 3, 14)
    for b in range(6):
        assert starts[b].tolist() == best_partitions(C[b], 3, 3)[3][0]


def test_bic_finds_the_number_of_straight_pieces():
    right = 0
    for seed in range(30):
        rng = np.random.default_rng(seed)
        x = np.arange(40.0)
        truth = np.where(x < 15, x, 15 - 2 * (x - 15)) * 0.2
        Y = np.c_[truth, -truth, 0.5 * truth] + rng.normal(0, 0.3, (40, 3))
        fit = select_segments(x, Y)
        right += fit.k == 2 and abs(fit.starts[0] - 15) <= 1
    assert right >= 27


def test_oracle_boundaries_are_covered_and_named_phases_carry_their_signature():
    """Nominal 95 % intervals cover the oracle's true boundaries >= 90 % of the time; most
    boundaries get named; every named phase moves the raw samples the way its name says."""
    def check(t, r):
        for p in r["phases"]:
            assert signature_holds_on_samples(t, p), p
            assert (p["name"] is None) == bool(p["failed"]) or p["expected"] is None

    got = score_phase_oracle(range(8), n_boot=50, check=check)
    assert got["named"] >= 0.6 * got["boundaries"] and got["covered"] >= 0.9 * got["named"], got


def test_dropping_any_probe_keeps_each_named_boundary_in_its_interval():
    t, truth = nanda_trace(2)
    r = nanda_phases_from_trace(t, val_midpoint=truth["val_midpoint"], n_boot=50)
    assert any(b["name"] for b in r["boundaries"])
    assert drop_one_violations(t, r, truth["val_midpoint"]) == []


def test_no_circuit_measures_or_empty_k_or_not_applicable_is_insufficient():
    t, _ = nanda_trace(0)
    series = {n: t.series(n) for n in t.names()}
    plain = {n: v for n, v in series.items() if not n.startswith("circuit/")}
    assert "no circuit measures" in nanda_phases_from_trace(MemoryTrace(plain))["insufficient"]
    flat = dict(series)
    s = series["circuit/restricted_loss"][0]
    flat["circuit/restricted_loss"] = (s, np.full(s.size, np.log(97)))
    assert "restricted loss constant" in nanda_phases_from_trace(MemoryTrace(flat))["insufficient"]
    meta = {"circuit/progress_measures": {"status": "not_applicable", "reason": "MSE outputs"}}
    assert "MSE outputs" in nanda_phases_from_trace(MemoryTrace(series, meta=meta))["insufficient"]
    few = {n: (v[0][:6], v[1][:6]) if n.startswith("circuit/") else v for n, v in series.items()}
    assert "6 probes" in nanda_phases_from_trace(MemoryTrace(few))["insufficient"]


def test_a_run_that_has_not_generalized_gets_no_circuit_formation_or_cleanup():
    t, truth = nanda_trace(1)
    r = nanda_phases_from_trace(t, generalized=False, n_boot=0, jackknife=False)
    assert r["tentative"]
    assert not {p["name"] for p in r["phases"]} & {"circuit_formation", "cleanup"}
    assert any("run has not generalized" in f for p in r["phases"] for f in p["failed"])


def test_analyzer_events_are_the_ends_of_named_phases_only():
    t, _ = nanda_trace(1)
    res = analyze_trace(t)
    ph = [e for e in res.events if e.signal == "phases"]
    named = {b["name"]: b for b in res.phases["boundaries"] if b["name"]}
    assert ph and {e.name for e in ph} == set(named)
    for e in ph:
        assert (e.step, e.low, e.high) == (named[e.name]["step"], named[e.name]["low"], named[e.name]["high"])
        assert e.low <= e.step <= e.high
    # an unnamed boundary never becomes an event
    assert len(ph) <= len(res.phases["boundaries"])


def test_without_probe_drops_only_the_circuit_samples():
    t, _ = nanda_trace(0)
    s = t.series("circuit/gini")[0][5]
    d = without_probe(t, s)
    assert s not in d.series("circuit/excluded_loss")[0] and s in d.series("weights/sum_sq")[0]


def test_a_measure_logged_at_few_probes_is_skipped_and_said():
    t, truth = nanda_trace(4)
    series = {n: t.series(n) for n in t.names()}
    s, v = series["circuit/gini"]
    series["circuit/gini"] = (s[s > 0.8 * s[-1]], v[s > 0.8 * s[-1]])
    r = nanda_phases_from_trace(MemoryTrace(series), val_midpoint=truth["val_midpoint"], n_boot=0, jackknife=False)
    assert r["signals_skipped"] == ["circuit/gini"] and "circuit/gini" not in r["signals"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evaluations_sparser_than_the_early_probes_still_carry_the_phases(seed):
    """Losses evaluated every 200 steps, probes 50-150 apart early (as in the Nanda config,
    evaluated every 100): a probe between two evaluations takes their interpolation, so the
    loss and accuracy signals are not dropped from the segmentation."""
    t, truth = nanda_trace(seed, every=200)
    r = nanda_phases_from_trace(t, val_midpoint=truth["val_midpoint"], n_boot=20, jackknife=False)
    assert r["signals_skipped"] == [] and {"train/loss", "val/loss"} <= set(r["signals"])

"""Awkward inputs are results ("insufficient data for X"), not crashes."""
import math

import numpy as np
import pytest

from phasewatch.analysis.analyzer import AnalysisConfig, analyze_trace
from phasewatch.analysis.events import LOSS_FLOOR, detect_spikes, fit_transition, threshold_event
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.signals import clean, reach_and_stay

CFG = AnalysisConfig(phases=False, memorization=False)


def test_clean_sorts_dedups_last_wins_and_drops_nonfinite():
    s, v, bad = clean([5, 1, 3, 3, 7], [0.5, 0.1, 0.3, 0.35, np.inf])
    assert s.tolist() == [1, 3, 5] and v.tolist() == [0.1, 0.35, 0.5] and bad == 7
    with pytest.raises(ValueError, match="differ in length"):
        clean([1, 2], [1.0])


def test_reach_and_stay_ignores_a_transient_blip_but_not_a_real_fall():
    v = np.array([0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1], dtype=float)
    assert reach_and_stay(np.arange(v.size), v, 0.99) == (6, 7)
    assert reach_and_stay(np.arange(4), np.array([0, 1, 1, 0.0]), 0.99, smooth=1) is None


@pytest.mark.parametrize("n", [0, 1, 2, 5])
def test_short_traces(n):
    s = np.arange(n) * 10
    t = MemoryTrace({"train/acc": (s, np.ones(n)), "val/acc": (s, np.zeros(n))})
    res = analyze_trace(t, CFG)
    assert res.run_class in ("unknown", "memorization", "confusion")
    if n < 3:
        assert any("insufficient data for memorization" in x for x in res.insufficient)
        assert res.run_class == "unknown"


def test_constant_traces_give_no_transition_and_confusion():
    s = np.arange(0, 5000, 10)
    t = MemoryTrace({"train/acc": (s, np.full(s.size, 0.3)), "val/acc": (s, np.full(s.size, 0.3)),
                     "train/loss": (s, np.full(s.size, 2.0))})
    res = analyze_trace(t, CFG)
    assert res.run_class == "confusion" and not res.censored
    assert res.transitions == {} and res.flags == ()
    assert fit_transition(s, np.full(s.size, 0.3), signal="x") is None


def test_missing_val_series_is_insufficient_data_not_a_crash():
    s = np.arange(0, 5000, 10)
    res = analyze_trace(MemoryTrace({"train/acc": (s, (s > 100) * 1.0)}), CFG)
    assert res.run_class == "unknown"
    assert "no val accuracy" in res.class_reason
    assert any("insufficient data for generalization" in x for x in res.insufficient)
    assert res.event("memorization").step == 110


def test_nan_inf_flag_diverged_with_first_bad_step():
    s = np.arange(0, 1000, 10)
    loss = np.exp(-s / 100.0)
    loss[50] = np.nan
    loss[60:] = np.inf
    t = MemoryTrace({"train/acc": (s, (s > 100) * 1.0), "val/acc": (s, np.zeros(s.size)),
                     "train/loss": (s, loss)})
    res = analyze_trace(t, CFG)
    assert "diverged" in res.flags and res.event("diverged").step == 500
    # the finite part is still analyzed
    assert res.event("memorization").step == 110


def test_duplicated_steps_from_a_resume_last_value_wins():
    s = np.concatenate([np.arange(0, 600, 10), np.arange(300, 1000, 10)])
    v = np.concatenate([np.zeros(60), (np.arange(300, 1000, 10) >= 400) * 1.0])
    e = threshold_event(s, v, 0.99, name="memorization", signal="train/acc")
    assert e.step == 400


def test_log_spaced_sampling_event_interval_brackets_the_crossing():
    s = np.unique(np.geomspace(1, 1e5, 300).astype(int))
    v = (s >= 3000) * 1.0
    e = threshold_event(s, v, 0.99, name="g", signal="val/acc")
    i = int(np.argmax(s >= 3000))                      # first evaluation at or after the jump
    assert e.evidence["bracket"] == [s[i - 1], s[i]]   # the true step lies in (s[i-1], s[i]]
    assert e.low <= s[i - 1] < 3000 <= s[i] <= e.high
    assert e.step == round(s[i - 1] + 0.99 * (s[i] - s[i - 1]))   # linear between 0 and 1


def test_spike_detector_dates_the_peak():
    s = np.arange(0, 2000, 10)
    loss = np.full(s.size, 1e-6)
    loss[100] = 1e-3
    ev = detect_spikes(s, loss, signal="train/loss")
    assert [e.step for e in ev] == [1000]
    # the median (1e-6) is below the float32 floor, so the spike is measured from the floor
    assert ev[0].evidence["decades_above_median"] == pytest.approx(math.log10(1e-3 / max(1e-6, LOSS_FLOOR)))
    assert detect_spikes(s[:5], loss[:5], signal="x") == []


def test_common_series_name_aliases_are_used_and_recorded():
    s = np.arange(0, 5000, 10)
    t = MemoryTrace({"train_acc": (s, (s >= 100) * 1.0), "test/acc": (s, (s >= 2000) * 1.0)})
    res = analyze_trace(t, CFG)
    assert res.run_class == "grokking"
    assert res.config["train_acc"] == "train_acc" and res.config["val_acc"] == "test/acc"


def test_a_rise_still_under_way_is_not_semi_grokking_and_the_fit_says_extrapolated():
    from phasewatch.analysis.synthetic import make_run
    r = make_run("grokking", 5, scheme="linear")
    res_full = analyze_trace(r.trace, CFG)
    mid = res_full.event("generalization_midpoint").step
    s = r.trace.series("val/acc")[0]
    cut = s <= mid * 1.1                                     # stopped in the middle of the rise
    t = MemoryTrace({k: (r.trace.series(k)[0][cut], r.trace.series(k)[1][cut]) for k in r.trace.names()})
    res = analyze_trace(t, CFG)
    assert "semi_grokking" not in res.flags
    assert res.run_class == "memorization" and res.censored
    done = res.event("generalization_completion")
    assert done is None or done.evidence["extrapolated"] == (done.step > s[cut][-1])

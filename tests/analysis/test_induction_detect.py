"""Induction detection on synthetic traces with known answers (smooth logistic rises with
autocorrelated noise on a log-then-linear probe grid), the analyzer / report wiring."""

import math

import numpy as np
import pytest

from phasewatch.analysis.analyzer import analyze_trace
from phasewatch.analysis.induction import InductionConfig, induction_events
from phasewatch.analysis.memtrace import MemoryTrace

MID, WIDTH = 2000.0, 80.0


def _grid():
    early = np.unique(np.round(np.logspace(0, 2, 40)).astype(int))
    return np.concatenate([[0], early, np.arange(200, 3501, 100)])


def _ar_noise(n, sd, rho, seed):
    rng = np.random.default_rng(seed)
    e = np.zeros(n)
    for i in range(1, n):
        e[i] = rho * e[i - 1] + rng.normal(0, sd)
    return e


def _trace(seed=0, rise=0.8, loss_drop=True, bump=0.12, fade_at=None):
    s = _grid()
    frac = 1 / (1 + np.exp(-(s - MID) / WIDTH))
    pm = 0.03 + rise * frac + _ar_noise(s.size, 0.01, 0.7, seed)
    rl = 4.1 - (3.6 * frac if loss_drop else 0.1 * s / s[-1]) + _ar_noise(s.size, 0.02, 0.7, seed + 1)
    nrl = 4.17 + bump * np.exp(-((s - MID - 100) / 150) ** 2) + _ar_noise(s.size, 0.004, 0.5, seed + 2)
    icl = -2.5 * frac + _ar_noise(s.size, 0.03, 0.5, seed + 3)
    if fade_at is not None:
        icl = icl + 2.0 / (1 + np.exp(-(s - fade_at) / 60))
    return s, MemoryTrace({"circuit/prefix_matching_max": (s, pm), "circuit/repeat_loss": (s, rl),
                           "circuit/nonrepeat_loss": (s, nrl), "circuit/icl_score": (s, icl)})


@pytest.mark.parametrize("seed", range(6))
def test_formation_points_lie_in_their_intervals(seed):
    s, t = _trace(seed)
    events, flags, notes = induction_events(t)
    by = {e.name: e for e in events}
    assert flags[0] == "induction_heads" and not notes
    for label, frac in (("onset", 0.1), ("midpoint", 0.5), ("end", 0.9)):
        truth = MID + WIDTH * math.log(frac / (1 - frac))
        e = by[f"induction_formation_{label}"]
        assert e.low <= e.step <= e.high
        # interval = at least the bracketing probes (100 apart here); noise may shift it one probe
        assert e.high - e.low >= 100
        assert e.low - 100 <= truth <= e.high + 100, (label, truth, e)
    bump = by["induction_bump"]
    assert bump.low <= MID + 100 <= bump.high and bump.evidence["rise"] == pytest.approx(0.12, abs=0.03)
    assert "icl_fade" not in by


def test_no_formation_without_a_rise_or_without_the_loss_fall():
    _, flat = _trace(rise=0.02)
    events, flags, notes = induction_events(flat)
    assert events == [] and flags == [] and "no induction heads" in notes[0]
    _, no_drop = _trace(loss_drop=False)
    events, _, notes = induction_events(no_drop)
    assert events == [] and "repeat loss fell only" in notes[0]
    # a looser rule (what the thresholds are for) accepts the same trace
    assert induction_events(no_drop, InductionConfig(min_loss_drop=1.0))[0]


def test_icl_fade_is_a_regression_event_dated_at_the_give_back():
    _, t = _trace(fade_at=3000)
    events, flags, _ = induction_events(t)
    fade = next(e for e in events if e.name == "icl_fade")
    assert "icl_fade" in flags
    assert fade.low <= 3000 + 100 and fade.high >= 3000 - 100  # half the gain given back at ~3000
    assert fade.evidence["best"] < -2.0 and fade.evidence["final"] > -1.0


def test_analyzer_reports_and_report_draws(tmp_path):
    _, t = _trace(seed=1)
    res = analyze_trace(t)
    names = [e.name for e in res.events]
    assert {"induction_formation_onset", "induction_formation_midpoint",
            "induction_formation_end", "induction_bump"} <= set(names)
    assert "induction_heads" in res.flags
    assert res.to_dict()["events"][names.index("induction_formation_midpoint")]["signal"] == \
        "circuit/prefix_matching_max"
    from phasewatch.analysis.report import run_figures
    figs = dict(run_figures(t, res, str(tmp_path), "syn"))
    assert (tmp_path / "syn_induction.png").stat().st_size > 5000 and "induction" in figs
    # a trace without the series: no panel, no event
    plain = MemoryTrace({"train/acc": (np.arange(10), np.linspace(0, 1, 10))})
    assert "induction" not in dict(run_figures(plain, analyze_trace(plain), str(tmp_path), "p"))


def test_docstring_examples():
    import doctest

    import phasewatch.analysis.induction as mod
    assert doctest.testmod(mod).failed == 0

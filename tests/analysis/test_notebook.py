"""Notebook API: a run as a wide DataFrame, its events as a DataFrame, Figures, HTML display."""
import numpy as np
import pytest

from phasewatch.analysis.figures import plot_comparison, plot_progress, plot_run
from phasewatch.analysis.memtrace import MemoryTrace
from phasewatch.analysis.notebook import open_run
from phasewatch.analysis.synthetic import make_run

pd = pytest.importorskip("pandas")


@pytest.fixture
def run_dir(make_run_dir):
    s = np.arange(0, 3000, 10)
    v = np.arange(0, 3000, 50)
    trace = MemoryTrace({"train_acc": (s, (s >= 100) * 1.0), "val_acc": (v, (v >= 2000) * 1.0),
                         "train_loss": (s, np.exp(-s / 500.0))})
    return make_run_dir(trace, "nb")


def test_to_pandas_is_wide_one_row_per_step(run_dir):
    with open_run(run_dir) as run:
        df = run.to_pandas()
    assert df.index.name == "step" and list(df.columns) == ["train_acc", "train_loss", "val_acc"]
    assert len(df) == 300                                  # the union of the steps (val's are a subset)
    assert df.loc[120, "train_acc"] == 1.0 and df.loc[90, "train_acc"] == 0.0
    assert np.isnan(df.loc[10, "val_acc"]) and df.loc[2000, "val_acc"] == 1.0
    np.testing.assert_allclose(df["train_loss"].to_numpy(), np.exp(-np.arange(0, 3000, 10) / 500.0))


def test_events_frame_matches_the_analysis(run_dir):
    with open_run(run_dir) as run:
        ev = run.events()
        res = run.analysis()
    assert list(ev.columns) == ["name", "step", "low", "high", "signal"]
    assert ev["name"].tolist() == [e.name for e in res.events]
    gen = ev.set_index("name").loc["generalization"]
    assert gen["step"] == 2000 and gen["signal"] == "val_acc"
    assert res.run_class == "grokking"


def test_figures_are_returned_and_draw_into_a_given_axes(run_dir):
    from matplotlib.figure import Figure
    with open_run(run_dir) as run:
        fig = run.plot()
        assert isinstance(fig, Figure)
        labels = {ln.get_label() for ax in fig.axes for ln in ax.get_lines()}
        assert {"train_acc", "val_acc", "train_loss", "generalization"} <= labels
        mine = Figure()
        ax = mine.subplots()
        assert plot_run(run, ax=ax) is mine
        assert plot_progress(run) is None                  # no circuit / weight-norm series
        cmp = plot_comparison([run, run], tags=["a", "b"], xlim=(1, 1e4))
        assert cmp.axes[0].get_xlim() == pytest.approx((1, 1e4))
        html = run._repr_html_()
        assert "run nb" in html and "grokking" in html and "<table>" in html
        assert "grokking" in run.analysis()._repr_html_()


def test_no_phase_band_without_circuit_measurements(make_run_dir):
    from matplotlib.patches import Rectangle
    trace = make_run("memorization", 0).trace
    s = trace.series("train/acc")[0]
    trace = MemoryTrace({**{n: trace.series(n) for n in trace.names()},
                         "weights/sum_sq": (s, 100 - np.log1p(s))})
    with open_run(make_run_dir(trace, "memo")) as run:
        phases = run.analysis().phases                        # no circuit measures: no phases ...
        assert not phases.get("phases") and "no circuit measures" in phases["insufficient"]
        fig = plot_run(run)
        bands = [p for p in fig.axes[0].patches if isinstance(p, Rectangle)
                 and p.get_label() in ("circuit formation", "cleanup", "memorization")]
        assert bands == []                                    # ... the figure draws none
        prog = plot_progress(run)
        assert len(prog.axes) == 2 and prog.axes[0].get_title() == "weight norm"  # + twin, no Fourier panel

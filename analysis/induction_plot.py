"""The induction figure: prefix-matching / previous-token / copying scores and the repeated
vs other-token loss on the report's step axis, with the induction events marked. Drawn only
when the ``InductionProbe`` series exist (``plot_induction`` returns None otherwise).

Example:
    >>> from phasewatch.analysis.induction_plot import plot_induction
    >>> fig = plot_induction("runs/latest")                  # doctest: +SKIP
"""
from __future__ import annotations

from .analyzer import AnalysisConfig
from .figures import _legend, _log_x, _new_axes, _trace_and_result, _xy
from .induction import NONREPEAT_LOSS, PREFIX_MATCHING, REPEAT_LOSS

__all__ = ["plot_induction"]

SCORES = (PREFIX_MATCHING, "circuit/prev_token_max", "circuit/copying_max")
LOSSES = (REPEAT_LOSS, NONREPEAT_LOSS)
COLORS = {"induction_formation_onset": "tab:olive", "induction_formation_midpoint": "tab:green",
          "induction_formation_end": "tab:olive", "induction_bump": "tab:red", "icl_fade": "black"}


def plot_induction(run, *, result=None, config: AnalysisConfig | None = None, xlim=None):
    """A two-panel Figure (scores, losses) for a run with InductionProbe series, else None."""
    trace, res, _ = _trace_and_result(run, result, config)
    names = set(trace.names())
    if PREFIX_MATCHING not in names:
        return None
    fig, (ax, lx) = _new_axes(None, (11, 3.6), 2)
    for a, series in ((ax, SCORES), (lx, LOSSES)):
        for n in series:
            if n in names and (xy := _xy(trace, n)) is not None:
                a.plot(*xy, lw=1.2, label=n.split("/")[-1])
        for e in res.events:
            if e.name in COLORS and e.step is not None:
                a.axvline(max(e.step, 0.5), color=COLORS[e.name], ls="--", lw=1, label=e.name)
                if e.name.endswith("midpoint") and e.low is not None and e.high is not None:
                    a.axvspan(max(e.low, 0.5), max(e.high, 0.5), color=COLORS[e.name], alpha=0.15, lw=0)
        _log_x(a, xlim)
        _legend(a)
    ax.set_ylabel("score")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("attention scores (max over heads)")
    lx.set_ylabel("loss (nats)")
    lx.set_title("repeated-segment vs other-token loss")
    return fig

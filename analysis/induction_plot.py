"""The report's induction panel: prefix-matching / previous-token scores and the repeat /
non-repeat losses on a step axis, with the induction events marked. Drawn only when the
``InductionProbe`` series exist (``induction_figure`` returns [] otherwise).

Example:
    >>> # run_figures(...) calls induction_figure(trace, res, fig_dir, tag) for every run
"""
from __future__ import annotations

import os

from .induction import NONREPEAT_LOSS, PREFIX_MATCHING, REPEAT_LOSS
from .signals import clean

__all__ = ["induction_figure"]

SCORES = (PREFIX_MATCHING, "circuit/prev_token_max", "circuit/copying_max")
LOSSES = (REPEAT_LOSS, NONREPEAT_LOSS)
COLORS = {"induction_formation_onset": "tab:olive", "induction_formation_midpoint": "tab:green",
          "induction_formation_end": "tab:olive", "induction_bump": "tab:red", "icl_fade": "black"}


def induction_figure(trace, res, fig_dir: str, tag: str = "run") -> list[tuple[str, str]]:
    """Draw ``<tag>_induction.png`` into ``fig_dir``; ``[(title, path)]`` or [] without the series."""
    names = set(trace.names())
    if PREFIX_MATCHING not in names:
        return []
    from .report import _plt, _save
    plt = _plt()
    fig, (ax, lx) = plt.subplots(1, 2, figsize=(10, 3.6))
    for n in SCORES:
        if n in names:
            s, v, _ = clean(*trace.series(n))
            ax.plot(s, v, lw=1.2, label=n.split("/")[-1])
    ax.set_ylabel("score")
    ax.set_ylim(-0.02, 1.02)
    for n in LOSSES:
        if n in names:
            s, v, _ = clean(*trace.series(n))
            lx.plot(s, v, lw=1.2, label=n.split("/")[-1])
    lx.set_ylabel("loss (nats)")
    for a in (ax, lx):
        for e in res.events:
            if e.name in COLORS and e.step is not None:
                a.axvline(e.step, color=COLORS[e.name], ls="--", lw=1)
                if e.name.endswith("midpoint"):
                    a.axvspan(e.low, e.high, color=COLORS[e.name], alpha=0.15, lw=0)
        a.set_xlabel("step")
        a.legend(fontsize=7)
    ax.set_title("attention scores (max over heads)")
    lx.set_title("repeated-segment vs other-token loss")
    return [("induction", _save(fig, os.path.join(fig_dir, f"{tag}_induction.png")))]

"""matplotlib figures of a run, returned as ``Figure`` objects (notebooks) and saved by the report.

- ``plot_run(run, ax=None)``: train / val accuracy (left axis), losses (right, log), event
  markers, and Nanda phase bands only where the run has circuit measurements;
- ``plot_progress(run)``: progress measures (circuit losses, weight norm) and, when logged,
  Fourier sparsity; None for a run without ``circuit/*`` or ``weights/sum_sq`` series;
- ``plot_memorization(run)``: per-example memorization F(s), subset accuracies, memorized bits;
  None when the analysis has none;
- ``plot_comparison(runs)``: train (dotted) and val accuracy of several runs on one axis.

``run`` is a run directory, a ``phasewatch.analysis.notebook.Run`` or any trace (reader API).
All step axes are log-scaled; pass ``xlim=(lo, hi)`` to share one x range between figures (the
report does). Legends sit outside the axes, so no curve runs through them. No pyplot: the
figures are not registered with a GUI backend (nothing to close; a notebook shows the returned
object).

Example:
    >>> from phasewatch.analysis.figures import plot_run
    >>> fig = plot_run("runs/latest")                       # doctest: +SKIP
    >>> fig.savefig("curves.svg")                           # doctest: +SKIP
"""
from __future__ import annotations

import numpy as np

from .analyzer import AnalysisConfig, analyze_trace
from .names import resolve_all
from .signals import clean, log_bin

__all__ = ["plot_run", "plot_progress", "plot_memorization", "plot_comparison", "step_range"]

PHASE_COLORS = {"memorization": "#fde0c5", "circuit_formation": "#c6dbef", "cleanup": "#c7e9c0",
                "post_cleanup": "#eeeeee"}
CIRCUIT_LOSSES = ("circuit/excluded_loss", "circuit/restricted_loss")
SPARSITY = ("circuit/gini", "circuit/gini_embed", "circuit/gini_unembed", "circuit/ipr_mean",
            "circuit/share_neurons_explained")
MARKED = {"memorization": "tab:orange", "generalization": "tab:green", "ungrokking": "tab:red",
          "corrupted_memorization_t50": "tab:purple", "best_val_plateau": "tab:gray",
          "train_acc_fall": "tab:brown", "diverged": "black"}


def _trace_and_result(run, result=None, config: AnalysisConfig | None = None):
    """``(trace, result, title)`` for a path, a notebook Run or a trace."""
    config = config or AnalysisConfig()
    title = getattr(run, "run_id", None)
    if isinstance(run, (str, bytes)) or hasattr(run, "__fspath__"):
        from .notebook import open_run
        run = open_run(run)
        title = run.run_id
    trace = getattr(run, "trace", run)
    if result is None:
        result = run.analysis(config) if hasattr(run, "analysis") else analyze_trace(trace, config)
    return trace, result, title or "run"


def _new_axes(ax, figsize, ncols=1):
    from matplotlib.figure import Figure
    if ax is not None:
        return ax.figure, ([ax] if ncols == 1 else ax)
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, (list(np.atleast_1d(axes)))


def _xy(trace, name, max_points=2000):
    s, v, _ = clean(*trace.series(name))
    if s.size == 0:
        return None
    s, v = log_bin(s, v, max_points)
    return np.maximum(s, 0.5), v


def step_range(*traces) -> tuple[float, float] | None:
    """One log-axis x range covering every scalar series of ``traces`` (None when empty)."""
    lo, hi = np.inf, -np.inf
    for t in traces:
        for n in t.names():
            s = np.asarray(t.series(n)[0])
            if s.size:
                lo, hi = min(lo, float(s.min())), max(hi, float(s.max()))
    if not np.isfinite(hi):
        return None
    lo = max(lo, 0.5)
    return lo / 1.2, max(hi, lo * 2) * 1.2


def _has_circuits(trace) -> bool:
    return any(n.startswith("circuit/") for n in trace.names())


def _decorate(ax, res, phases: bool):
    if phases:
        for p in (res.phases or {}).get("phases", []):
            if not p["name"]:  # a segment whose signature failed gets no band
                continue
            ax.axvspan(max(p["start"], 0.5), max(p["end"], 0.5), color=PHASE_COLORS.get(p["name"], "#eee"),
                       alpha=0.5, lw=0, label=p["name"].replace("_", " "))
    for e in res.events:
        if e.name in MARKED and e.step is not None:
            ax.axvline(max(e.step, 0.5), color=MARKED[e.name], ls="--", lw=1, label=e.name)
            if e.low is not None and e.high is not None and e.high > e.low:
                ax.axvspan(max(e.low, 0.5), max(e.high, 0.5), color=MARKED[e.name], alpha=0.15, lw=0)
        elif e.name == "slingshot":
            ax.axvline(max(e.step, 0.5), color="tab:red", ls=":", lw=0.8)


def _legend(ax, *more_axes, keep=lambda label: True):
    """One legend for ``ax`` and its twins, outside the plot area on the right."""
    handles = {}
    for a in (ax, *more_axes):
        for h, lab in zip(*a.get_legend_handles_labels()):
            if keep(lab):
                handles.setdefault(lab, h)
    if handles:
        ax.legend(handles.values(), handles.keys(), fontsize=7, loc="upper left",
                  bbox_to_anchor=(1.10 if more_axes else 1.01, 1.0), borderaxespad=0)


def _log_x(ax, xlim):
    ax.set_xscale("log")
    ax.set_xlabel("step (log)")
    if xlim is not None:
        ax.set_xlim(*xlim)


def plot_run(run, ax=None, *, result=None, config: AnalysisConfig | None = None, xlim=None,
             title: str | None = None):
    """Accuracies, losses, events (and phase bands with circuit data) of one run; the Figure."""
    trace, res, tag = _trace_and_result(run, result, config)
    core = resolve_all(trace.names(), config)
    fig, (ax,) = _new_axes(ax, (9, 4))
    for role, c in (("train_acc", "tab:blue"), ("val_acc", "tab:red")):
        if role in core and (xy := _xy(trace, core[role])) is not None:
            ax.plot(*xy, color=c, lw=1.2, label=core[role])
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("accuracy")
    twins = []
    losses = [core[r] for r in ("train_loss", "val_loss") if r in core]
    if losses:
        ax2 = ax.twinx()
        twins.append(ax2)
        for n, c in zip(losses, ("tab:cyan", "tab:pink")):
            xy = _xy(trace, n)
            if xy is not None and (xy[1] > 0).any():
                ax2.plot(xy[0][xy[1] > 0], xy[1][xy[1] > 0], color=c, lw=0.8, alpha=0.8, label=n)
        ax2.set_yscale("log")
        ax2.set_ylabel("loss (log)")
    _decorate(ax, res, phases=_has_circuits(trace))
    _log_x(ax, xlim)
    _legend(ax, *twins)
    ax.set_title(f"{title or tag}: {res.run_class}{' (censored)' if res.censored else ''}")
    return fig


def plot_progress(run, *, result=None, config: AnalysisConfig | None = None, xlim=None):
    """Progress measures and weight norm (and Fourier sparsity when logged); None without them."""
    trace, res, _ = _trace_and_result(run, result, config)
    names = set(trace.names())
    if not any(n.startswith("circuit/") or n == "weights/sum_sq" for n in names):
        return None
    core = resolve_all(names, config)
    losses = [n for n in CIRCUIT_LOSSES if n in names] + [core[r] for r in ("train_loss", "val_loss")
                                                           if r in core]
    sparsity = [n for n in SPARSITY if n in names]
    fig, axes = _new_axes(None, (11 if sparsity else 8, 3.6), 2 if sparsity else 1)
    ax = axes[0]
    for n in losses:
        if (xy := _xy(trace, n)) is not None and (xy[1] > 0).any():
            ax.plot(xy[0][xy[1] > 0], xy[1][xy[1] > 0], lw=1, label=n)
    ax.set_yscale("log")
    ax.set_ylabel("loss (log)")
    twins = []
    if "weights/sum_sq" in names and (xy := _xy(trace, "weights/sum_sq")) is not None:
        norm_ax = ax.twinx()
        twins.append(norm_ax)
        norm_ax.plot(*xy, color="black", lw=1, ls="--", label="weights/sum_sq")
        norm_ax.set_ylabel("sum of squared weights")
    for n in sparsity:
        if (xy := _xy(trace, n)) is not None:
            axes[1].plot(*xy, lw=1, label=n)
    phases = _has_circuits(trace)
    for i, a in enumerate(axes):
        _log_x(a, xlim)
        _decorate(a, res, phases)
        _legend(a, *(twins if i == 0 else ()), keep=lambda k: "/" in k)
    ax.set_title("progress measures and weight norm" if phases else "weight norm")
    if sparsity:
        axes[1].set_title("Fourier sparsity")
    return fig


def plot_memorization(run, *, result=None, config: AnalysisConfig | None = None, xlim=None):
    """Per-example memorization F(s), subset accuracies and memorized bits; None without them."""
    _, res, _ = _trace_and_result(run, result, config)
    mem = res.memorization or {}
    if not (mem.get("o3") or mem.get("capacity")):
        return None
    fig, (ax,) = _new_axes(None, (9, 3.6))
    twins = []
    if mem.get("o3"):
        F = mem["o3"]["F"]
        xs = np.maximum(np.asarray(F["steps"], float), 0.5)
        for k, c in (("all", "black"), ("clean", "tab:blue"), ("corrupted", "tab:red")):
            if k in F:
                ax.plot(xs, F[k], color=c, label=f"F(s) {k}: memorized by s")
        if mem.get("subset_acc"):
            sa = mem["subset_acc"]
            sx = np.maximum(np.asarray(sa["steps"], float), 0.5)
            ax.plot(sx, sa["corrupted"], color="tab:red", ls=":", label="acc corrupted")
            ax.plot(sx, sa["clean"], color="tab:blue", ls=":", label="acc clean")
        ax.set_ylim(-0.02, 1.02)
    if mem.get("capacity"):
        cap = np.asarray(mem["capacity"]["curve"], float)
        a2 = ax.twinx() if mem.get("o3") else ax
        if a2 is not ax:
            twins.append(a2)
        a2.plot(np.maximum(cap[:, 0], 0.5), cap[:, 1], color="tab:green", label="memorized bits")
        a2.set_ylabel("bits")
    _log_x(ax, xlim)
    _decorate(ax, res, phases=False)
    _legend(ax, *twins)
    ax.set_title("per-example memorization")
    return fig


def plot_comparison(runs, *, results=None, tags=None, config: AnalysisConfig | None = None,
                    xlim=None):
    """Val (solid) and train (dotted) accuracy of several runs on one axis; the Figure."""
    fig, (ax,) = _new_axes(None, (9, 4))
    results = results or [None] * len(runs)
    for i, (run, r) in enumerate(zip(runs, results)):
        trace, res, tag = _trace_and_result(run, r, config)
        tag = tags[i] if tags else tag
        core = resolve_all(trace.names(), config)
        for role, ls in (("val_acc", "-"), ("train_acc", ":")):
            if role in core and (xy := _xy(trace, core[role])) is not None:
                ax.plot(*xy, ls=ls, lw=1, label=f"{tag} {core[role]} ({res.run_class})")
    _log_x(ax, xlim)
    ax.set_ylabel("accuracy")
    _legend(ax)
    ax.set_title("runs side by side")
    return fig

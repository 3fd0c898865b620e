"""``phasewatch report``: PNG figures and one self-contained HTML page (images embedded).

Per run: accuracies and losses on a log-step axis with Nanda phase bands and event
markers (``curves``), weight norm and progress measures (``progress``), per-example
memorization F(s) / subset accuracy / memorized bits (``memorization``). With several
runs: val accuracy side by side (``comparison``), a table, and a phase diagram when two
hyperparameters vary. matplotlib runs headless (Agg), imported only here.

Example:
    $ phasewatch report runs/a runs/b --out cmp/   # cmp/report.html, cmp/figures/*.png
"""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np

from .analyzer import AnalysisConfig, analyze_trace, write_analysis
from .signals import clean, log_bin

__all__ = ["write_report", "run_figures"]

PHASE_COLORS = {"memorization": "#fde0c5", "circuit_formation": "#c6dbef", "cleanup": "#c7e9c0",
                "post_cleanup": "#eeeeee"}
PROGRESS_LOSSES = ("circuit/excluded_loss", "circuit/restricted_loss", "train/loss", "val/loss")
SPARSITY = ("circuit/gini", "circuit/gini_embed", "circuit/gini_unembed", "circuit/ipr_mean",
            "circuit/frac_explained")
MARKED = {"memorization": "tab:orange", "generalization": "tab:green", "ungrokking": "tab:red",
          "corrupted_memorization_t50": "tab:purple", "best_val_plateau": "tab:gray",
          "train_acc_fall": "tab:brown", "diverged": "black"}


def _plt():
    import matplotlib
    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["text.parse_math"] = False  # run / metric names may hold "$...$"
    import matplotlib.pyplot as plt
    return plt


def _xy(trace, name, max_points=2000):
    s, v, _ = clean(*trace.series(name))
    if s.size == 0:
        return None
    s, v = log_bin(s, v, max_points)
    return np.maximum(s, 0.5), v


def _decorate(ax, res):
    for p in (res.phases or {}).get("phases", []):
        ax.axvspan(max(p["start"], 0.5), max(p["end"], 0.5), color=PHASE_COLORS.get(p["name"], "#eee"),
                   alpha=0.5, lw=0, label=p["name"].replace("_", " "))
    for e in res.events:
        if e.name in MARKED and e.step is not None:
            ax.axvline(max(e.step, 0.5), color=MARKED[e.name], ls="--", lw=1, label=e.name)
            if e.low is not None and e.high is not None and e.high > e.low:
                ax.axvspan(max(e.low, 0.5), max(e.high, 0.5), color=MARKED[e.name], alpha=0.15, lw=0)
        elif e.name == "slingshot":
            ax.axvline(max(e.step, 0.5), color="tab:red", ls=":", lw=0.8)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    _plt().close(fig)
    return path


def run_figures(trace, res, fig_dir, tag="run") -> list[tuple[str, str]]:
    """Draw the figures of one run into ``fig_dir``; return ``[(title, png path)]``."""
    plt = _plt()
    os.makedirs(fig_dir, exist_ok=True)
    names = set(trace.names())
    out = []
    fig, ax = plt.subplots(figsize=(8, 4))
    for n, c in (("train/acc", "tab:blue"), ("val/acc", "tab:red")):
        if n in names and (xy := _xy(trace, n)) is not None:
            ax.plot(*xy, color=c, lw=1.2, label=n)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("step (log)")
    ax.set_ylabel("accuracy")
    losses = [n for n in ("train/loss", "val/loss") if n in names]
    if losses:
        ax2 = ax.twinx()
        for n, c in zip(losses, ("tab:cyan", "tab:pink")):
            xy = _xy(trace, n)
            if xy is not None and (xy[1] > 0).any():
                ax2.plot(xy[0][xy[1] > 0], xy[1][xy[1] > 0], color=c, lw=0.8, alpha=0.8, label=n)
        ax2.set_yscale("log")
        ax2.set_ylabel("loss (log)")
        ax2.legend(loc="center right", fontsize=7)
    _decorate(ax, res)
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    ax.legend(uniq.values(), uniq.keys(), loc="upper left", fontsize=7)
    ax.set_title(f"{tag}: {res.run_class}{' (censored)' if res.censored else ''}")
    out.append(("curves", _save(fig, os.path.join(fig_dir, f"{tag}_curves.png"))))

    losses = [n for n in PROGRESS_LOSSES if n in names]
    sparsity = [n for n in SPARSITY if n in names]
    measured = [n for n in (*losses, *sparsity, "weights/sum_sq") if n.startswith(("circuit/", "weights/"))]
    if set(measured) & names:  # train/val losses alone are already in the curves figure
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
        for n in losses:
            if (xy := _xy(trace, n)) is not None and (xy[1] > 0).any():
                axes[0].plot(xy[0][xy[1] > 0], xy[1][xy[1] > 0], lw=1, label=n)
        axes[0].set_yscale("log")
        axes[0].set_ylabel("loss (log)")
        if "weights/sum_sq" in names and (xy := _xy(trace, "weights/sum_sq")) is not None:
            norm_ax = axes[0].twinx()
            norm_ax.plot(*xy, color="black", lw=1, ls="--", label="weights/sum_sq")
            norm_ax.set_ylabel("sum of squared weights")
            norm_ax.legend(loc="upper left", fontsize=7)
        for n in sparsity:
            if (xy := _xy(trace, n)) is not None:
                axes[1].plot(*xy, lw=1, label=n)
        for a in axes:
            a.set_xscale("log")
            a.set_xlabel("step (log)")
            _decorate(a, res)
            h, lab = a.get_legend_handles_labels()
            uniq = {k: v for k, v in zip(lab, h) if "/" in k}
            if uniq:
                a.legend(uniq.values(), uniq.keys(), fontsize=7)
        axes[0].set_title("progress measures (Nanda et al.) and weight norm")
        axes[1].set_title("Fourier sparsity")
        out.append(("progress", _save(fig, os.path.join(fig_dir, f"{tag}_progress.png"))))

    mem = res.memorization or {}
    if mem.get("o3") or mem.get("capacity"):
        fig, ax = plt.subplots(figsize=(8, 3.6))
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
            a2.plot(np.maximum(cap[:, 0], 0.5), cap[:, 1], color="tab:green", label="memorized bits")
            a2.set_ylabel("bits")
        ax.set_xscale("log")
        ax.set_xlabel("step (log)")
        _decorate(ax, res)
        h, lab = ax.get_legend_handles_labels()
        uniq = {k: v for k, v in zip(lab, h) if not k.startswith(("memorization", "circuit", "cleanup", "post"))}
        ax.legend(uniq.values(), uniq.keys(), fontsize=7)
        ax.set_title("per-example memorization")
        out.append(("memorization", _save(fig, os.path.join(fig_dir, f"{tag}_memorization.png"))))
    return out


def _comparison(traces, results, tags, fig_dir, agg):
    plt = _plt()
    figs = []
    fig, ax = plt.subplots(figsize=(8, 4))
    for t, r, tag in zip(traces, results, tags):
        for n, ls in (("val/acc", "-"), ("train/acc", ":")):
            if n in t.names() and (xy := _xy(t, n)) is not None:
                ax.plot(*xy, ls=ls, lw=1, label=f"{tag} {n} ({r.run_class})")
    ax.set_xscale("log")
    ax.set_xlabel("step (log)")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=6)
    ax.set_title("runs side by side")
    figs.append(("comparison", _save(fig, os.path.join(fig_dir, "comparison.png"))))
    d = agg.get("phase_diagram") if agg else None
    if d:
        classes = ["comprehension", "grokking", "memorization", "confusion", "unknown"]
        grid = np.array([[classes.index(c) if c in classes else np.nan for c in row] for row in d["classes"]],
                        dtype=float)
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.imshow(grid, cmap="tab10", vmin=0, vmax=9, origin="lower", aspect="auto")
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                ax.text(j, i, classes[int(v)], ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(d["x_values"])), [str(x) for x in d["x_values"]])
        ax.set_yticks(range(len(d["y_values"])), [str(y) for y in d["y_values"]])
        ax.set_xlabel(d["x"])
        ax.set_ylabel(d["y"])
        ax.set_title("phase diagram (majority class)")
        figs.append(("phase diagram", _save(fig, os.path.join(fig_dir, "phase_diagram.png"))))
    return figs


def _img(path, title):
    with open(path, "rb") as f:
        b64 = base64.b64encode(f.read()).decode("ascii")
    return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(title)}</figcaption></figure>'


def _event_table(res):
    rows = "".join(f"<tr><td>{html.escape(e.name)}</td><td>{e.step}</td><td>[{e.low}, {e.high}]</td>"
                   f"<td>{html.escape(e.signal)}</td></tr>" for e in res.events)
    return f"<table><tr><th>event</th><th>step</th><th>interval</th><th>signal</th></tr>{rows}</table>"


def write_report(runs, out=None, config: AnalysisConfig = AnalysisConfig()) -> str:
    """Analyze ``runs`` (paths), draw figures, write ``out/report.html``; return its path."""
    from .store_read import load_run

    runs = [str(r) for r in runs]
    if not runs:
        raise ValueError("report needs at least one run directory")
    traces, results, tags = [], [], []
    for i, r in enumerate(runs):  # every run is read before anything is written
        t = load_run(r)
        traces.append(t)
        results.append(analyze_trace(t, config, run=r))
        tag = os.path.basename(os.path.normpath(r)) or f"run{i}"
        tags.append(f"{tag}_{i}" if tag in tags else tag)
    if out is None:
        out = os.path.join(runs[0], "analysis") if len(runs) == 1 else "phasewatch_report"
        for res, r in zip(results, runs):
            write_analysis(res, r)
    else:  # --out: nothing is written anywhere else
        for res, tag in zip(results, tags):
            write_analysis(res, None, out_dir=out if len(runs) == 1 else os.path.join(out, tag))
    fig_dir = os.path.join(out, "figures")
    os.makedirs(fig_dir, exist_ok=True)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>phasewatch report</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px}"
             "pre{background:#f6f6f6;padding:6px;font-size:12px}</style></head><body>",
             f"<h1>phasewatch report ({len(runs)} run{'s' if len(runs) > 1 else ''})</h1>"]
    agg = None
    if len(runs) > 1:
        from .aggregate import aggregate_results, format_table, run_params
        agg = aggregate_results(results, [run_params(r) for r in runs])
        parts.append(f"<h2>Runs side by side</h2><pre>{html.escape(format_table(agg))}</pre>")
        for title, p in _comparison(traces, results, tags, fig_dir, agg):
            parts.append(_img(p, title))
    for t, res, tag in zip(traces, results, tags):
        parts.append(f"<h2>{html.escape(tag)}</h2><pre>{html.escape(res.summary())}</pre>")
        for title, p in run_figures(t, res, fig_dir, tag):
            parts.append(_img(p, f"{tag}: {title}"))
        parts.append(_event_table(res))
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(config.to_dict(), indent=1)) + "</pre>")
    parts.append("</body></html>")
    path = os.path.join(out, "report.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    for t in traces:
        t.close()
    return path

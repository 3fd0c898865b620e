"""``phasewatch report``: PNG figures and one self-contained HTML page (images embedded).

Per run: accuracies and losses on a log-step axis with event markers (and Nanda phase bands
when the run has circuit measurements) (``curves``), weight norm and progress measures
(``progress``), per-example memorization F(s) / subset accuracy / memorized bits
(``memorization``); drawn by ``phasewatch.analysis.figures``. With several runs: val accuracy
side by side (``comparison``), a table, and a phase diagram when two hyperparameters vary.
PNG at 150 dpi (``--svg``: also SVG); one x range across all figures of a report; runs are
named by their real directory (``runs/latest`` -> its target).

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
from .figures import plot_comparison, plot_memorization, plot_progress, plot_run, step_range

__all__ = ["write_report", "run_figures", "run_tag"]

FIG_DPI = 150


def _save(fig, path, svg: bool = False) -> str:
    """Write ``fig`` as PNG (``FIG_DPI``) and, with ``svg``, also as SVG next to it. Text is
    drawn as typed: run and metric names may hold ``$...$``, which is not mathtext here."""
    for ax in fig.axes:  # titles, labels and legends: never the tick labels (mathtext powers)
        legend = ax.get_legend()
        for text in (ax.title, ax.xaxis.label, ax.yaxis.label,
                     *(legend.get_texts() if legend is not None else ())):
            text.set_parse_math(False)
    fig.savefig(path, dpi=FIG_DPI)
    if svg:
        fig.savefig(os.path.splitext(path)[0] + ".svg")
    return path


def run_figures(trace, res, fig_dir, tag="run", config: AnalysisConfig = AnalysisConfig(),
                xlim=None, svg: bool = False) -> list[tuple[str, str]]:
    """Draw the figures of one run into ``fig_dir``; return ``[(title, png path)]``."""
    os.makedirs(fig_dir, exist_ok=True)
    xlim = xlim or step_range(trace)
    out = [("curves", _save(plot_run(trace, result=res, config=config, xlim=xlim, title=tag),
                            os.path.join(fig_dir, f"{tag}_curves.png"), svg))]
    from .induction_plot import plot_induction
    for title, fn in (("progress", plot_progress), ("memorization", plot_memorization),
                      ("induction", plot_induction)):
        fig = fn(trace, result=res, config=config, xlim=xlim)
        if fig is not None:
            out.append((title, _save(fig, os.path.join(fig_dir, f"{tag}_{title}.png"), svg)))
    return out


def _phase_diagram(agg, fig_dir, svg):
    from matplotlib.figure import Figure
    d = agg.get("phase_diagram") if agg else None
    if not d:
        return []
    classes = ["comprehension", "grokking", "memorization", "confusion", "unknown"]
    grid = np.array([[classes.index(c) if c in classes else np.nan for c in row] for row in d["classes"]],
                    dtype=float)
    fig = Figure(figsize=(5, 4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(grid, cmap="tab10", vmin=0, vmax=9, origin="lower", aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        if np.isfinite(v):
            ax.text(j, i, classes[int(v)], ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(d["x_values"])), [str(x) for x in d["x_values"]])
    ax.set_yticks(range(len(d["y_values"])), [str(y) for y in d["y_values"]])
    ax.set_xlabel(d["x"])
    ax.set_ylabel(d["y"])
    ax.set_title("phase diagram (majority class)")
    return [("phase diagram", _save(fig, os.path.join(fig_dir, "phase_diagram.png"), svg))]


def _img(path, title):
    with open(path, "rb") as f:
        b64 = base64.b64encode(f.read()).decode("ascii")
    return f'<figure><img alt="{html.escape(title)}" src="data:image/png;base64,{b64}"><figcaption>{html.escape(title)}</figcaption></figure>'


def _event_table(res):
    rows = "".join(f"<tr><td>{html.escape(e.name)}</td><td>{e.step}</td><td>[{e.low}, {e.high}]</td>"
                   f"<td>{html.escape(e.signal)}</td></tr>" for e in res.events)
    return f"<table><tr><th>event</th><th>step</th><th>interval</th><th>signal</th></tr>{rows}</table>"


def run_tag(path) -> str:
    """The run's own id: ``runs/latest`` (a symlink) -> the directory it points to."""
    return os.path.basename(os.path.realpath(path)) or os.path.basename(os.path.normpath(path))


def write_report(runs, out=None, config: AnalysisConfig = AnalysisConfig(), svg: bool = False) -> str:
    """Analyze ``runs`` (paths), draw figures (PNG at 150 dpi, also SVG with ``svg``), write
    ``out/report.html``; return its path. All figures share one x range."""
    from .store_read import load_run

    runs = [str(r) for r in runs]
    if not runs:
        raise ValueError("report needs at least one run directory")
    traces, results, tags = [], [], []
    for i, r in enumerate(runs):  # every run is read before anything is written
        t = load_run(r)
        traces.append(t)
        results.append(analyze_trace(t, config, run=os.path.join(os.path.dirname(os.path.normpath(r)),
                                                                  run_tag(r))))
        tag = run_tag(r) or f"run{i}"
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
    agg, xlim = None, step_range(*traces)
    if len(runs) > 1:
        from .aggregate import aggregate_results, format_table, run_params
        agg = aggregate_results(results, [run_params(r) for r in runs])
        parts.append(f"<h2>Runs side by side</h2><pre>{html.escape(format_table(agg))}</pre>")
        cmp = plot_comparison(traces, results=results, tags=tags, config=config, xlim=xlim)
        for title, p in [("comparison", _save(cmp, os.path.join(fig_dir, "comparison.png"), svg)),
                         *_phase_diagram(agg, fig_dir, svg)]:
            parts.append(_img(p, title))
    for t, res, tag in zip(traces, results, tags):
        parts.append(f"<h2>{html.escape(tag)}</h2><pre>{html.escape(res.summary())}</pre>")
        for title, p in run_figures(t, res, fig_dir, tag, config, xlim, svg):
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

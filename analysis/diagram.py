"""``phasewatch aggregate DIR``: the phase diagram of a sweep, its table and an HTML page.

A cell is one setting of the swept keys; its runs are the seeds. The diagram shows per cell
the majority class and how many seeds agree with it, and heatmaps of the memorization step
(t_mem) and the generalization step (t_gen): the median over the seeds that reached it, with
the range (min-max) written in the cell. A cell with a censored run (stopped while train
accuracy was still rising, or too early to call memorization final) carries ``*``. An axis
whose values are log-spaced is drawn on a log scale. Outputs in ``OUT`` (default
``DIR/aggregate``): ``aggregate.json`` (runs, groups, diagram), ``cells.csv``,
``phase_diagram.png`` and ``index.html``.

Runs come from the sweep state (``DIR/sweep.sqlite``: finished trials, their swept values)
or, for any other folder, from run directories one or two levels below it with their
``config.yaml``.

Example:
    $ phasewatch aggregate sweeps/out/wd_frac
    >>> log_spaced([0.1, 0.3, 1, 3, 10]), log_spaced([0.3, 0.5, 0.7])
    (True, False)
"""
from __future__ import annotations

import csv
import html
import json
import os

import numpy as np

from .aggregate import _sort_key, aggregate_results, format_table, run_params, write_aggregate
from .analyzer import AnalysisConfig, analyze_run

__all__ = ["aggregate_dir", "collect_runs", "cell_grid", "log_spaced", "write_cells_csv"]

CLASS_COLORS = {"comprehension": "#4daf4a", "grokking": "#377eb8", "memorization": "#ff7f00",
                "confusion": "#e41a1c", "unknown": "#999999"}
STEP_EVENTS = (("t_mem", "memorization"), ("t_gen", "generalization"))


def collect_runs(root) -> tuple[list[str], list[dict]]:
    """Run directories under ``root`` and their parameters (sweep state first)."""
    from .sweep_state import SweepState, is_sweep_dir
    from .watch import find_runs

    if is_sweep_dir(root):
        state = SweepState(root)
        try:
            done = [t for t in state.trials() if t.status == "done" and t.run_dir]
        finally:
            state.close()
        return [os.path.join(str(root), t.run_dir) for t in done], [t.params for t in done]
    runs = [str(p) for p in find_runs(root)]
    return runs, [run_params(r) for r in runs]


def log_spaced(values) -> bool:
    """Positive numbers spread over at least a factor 10 whose log steps are more even than
    their linear steps."""
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return False
    a = np.sort(np.asarray(values, dtype=float))
    if a.size < 2 or a[0] <= 0 or a[-1] / a[0] < 10:
        return False
    if a.size == 2:
        return True
    lin, lg = np.diff(a), np.diff(np.log10(a))
    return bool(lg.std() / lg.mean() < lin.std() / lin.mean())


def cell_grid(agg: dict) -> dict | None:
    """The cells on the grid of at most two swept keys: axes and, per cell, its group."""
    varying = agg["varying"]
    if len(varying) > 2:
        return None
    x = varying[0] if varying else None
    y = varying[1] if len(varying) == 2 else None
    xs = sorted({g["params"].get(x) for g in agg["groups"]}, key=_sort_key) if x else [None]
    ys = sorted({g["params"].get(y) for g in agg["groups"]}, key=_sort_key) if y else [None]
    cells = [[None for _ in xs] for _ in ys]
    for g in agg["groups"]:
        cells[ys.index(g["params"].get(y))][xs.index(g["params"].get(x))] = g
    return {"x": x, "y": y, "x_values": xs, "y_values": ys, "cells": cells}


def _edges(values, log: bool) -> np.ndarray:
    if values == [None] or not all(isinstance(v, (int, float)) for v in values):
        return np.arange(len(values) + 1) - 0.5
    a = np.log10(np.asarray(values, dtype=float)) if log else np.asarray(values, dtype=float)
    step = np.diff(a) if a.size > 1 else np.array([1.0])
    mid = np.concatenate([[a[0] - step[0] / 2], (a[:-1] + a[1:]) / 2, [a[-1] + step[-1] / 2]])
    return 10 ** mid if log else mid


def _centers(values, edges) -> np.ndarray:
    if values == [None] or not all(isinstance(v, (int, float)) for v in values):
        return np.arange(len(values), dtype=float)
    return np.asarray(values, dtype=float)


def _axis(ax, which: str, key, values, edges) -> None:
    log = key is not None and log_spaced(values)
    getattr(ax, f"set_{which}scale")("log" if log else "linear")
    centers = _centers(values, edges)
    getattr(ax, f"set_{which}ticks")(centers, ["" if v is None else f"{v:g}" if isinstance(v, float)
                                              else str(v) for v in values])
    getattr(ax, f"set_{which}ticks")([], minor=True)
    getattr(ax, f"set_{which}label")((key or "") + (" (log scale)" if log else ""))


def draw_diagram(agg: dict, path: str) -> str | None:
    """Class map + t_mem / t_gen heatmaps in one PNG; ``None`` when more than two keys vary."""
    grid = cell_grid(agg)
    if grid is None:
        return None
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap, LogNorm

    xs, ys = grid["x_values"], grid["y_values"]
    xe = _edges(xs, grid["x"] is not None and log_spaced(xs))
    ye = _edges(ys, grid["y"] is not None and log_spaced(ys))
    xc, yc = _centers(xs, xe), _centers(ys, ye)
    names = list(CLASS_COLORS)
    fig, axes = plt.subplots(1, 3, figsize=(5.2 * 3, 0.9 * len(ys) + 3.2))
    cls = np.full((len(ys), len(xs)), np.nan)
    for i, row in enumerate(grid["cells"]):
        for j, g in enumerate(row):
            if g is not None:
                cls[i, j] = names.index(g["majority_class"])
    axes[0].pcolormesh(xe, ye, np.ma.masked_invalid(cls), cmap=ListedColormap(list(CLASS_COLORS.values())),
                       vmin=-0.5, vmax=len(names) - 0.5, edgecolors="white")
    axes[0].set_title("class (seeds agreeing / seeds; * censored)")
    for k, (label, event) in enumerate(STEP_EVENTS, start=1):
        med = np.full((len(ys), len(xs)), np.nan)
        for i, row in enumerate(grid["cells"]):
            for j, g in enumerate(row):
                st = g and g["spread"].get(event)
                if st:
                    med[i, j] = st["median"]
        reached = med[np.isfinite(med)]
        norm = LogNorm() if reached.size and reached.min() > 0 else None
        mesh = axes[k].pcolormesh(xe, ye, np.ma.masked_invalid(med), cmap="viridis", norm=norm,
                                  edgecolors="white")
        fig.colorbar(mesh, ax=axes[k], label="step (log scale)" if norm else "step")
        axes[k].set_title(f"{label}: median step over seeds [min-max]")
    for i, row in enumerate(grid["cells"]):
        for j, g in enumerate(row):
            if g is None:
                continue
            star = "*" if g["censored"] else ""
            agree = round(g["agreement"] * g["n"])
            axes[0].text(xc[j], yc[i], f"{g['majority_class']}\n{agree}/{g['n']}{star}",
                         ha="center", va="center", fontsize=8)
            for k, (_, event) in enumerate(STEP_EVENTS, start=1):
                st = g["spread"].get(event)
                text = (f"{st['median']:.0f}\n[{st['min']}-{st['max']}]" if st else "not\nreached") + star
                axes[k].text(xc[j], yc[i], text, ha="center", va="center", fontsize=7,
                             color="white" if st else "black")
    for ax in axes:
        _axis(ax, "x", grid["x"], xs, xe)
        _axis(ax, "y", grid["y"], ys, ye)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_cells_csv(agg: dict, path: str) -> str:
    """One row per cell: swept values, seeds, classes, agreement, censored, t_mem / t_gen."""
    keys = agg["varying"]
    head = [*keys, "n", "majority_class", "agreement", "classes", "censored"]
    for label, _ in STEP_EVENTS:
        head += [f"{label}_median", f"{label}_min", f"{label}_max", f"{label}_n"]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for g in agg["groups"]:
            row = [g["params"].get(k) for k in keys]
            row += [g["n"], g["majority_class"], f"{g['agreement']:.3f}",
                    ";".join(f"{c}:{n}" for c, n in sorted(g["classes"].items())), g["censored"]]
            for _, event in STEP_EVENTS:
                st = g["spread"].get(event)
                row += [st["median"], st["min"], st["max"], st["n"]] if st else ["", "", "", 0]
            w.writerow(row)
    return path


def _html(agg: dict, png: str | None, out: str, root) -> str:
    from .report import _img

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>phasewatch sweep</title>",
             "<style>body{font-family:sans-serif;max-width:1300px;margin:auto}img{max-width:100%}"
             "pre{background:#f6f6f6;padding:6px;font-size:12px}</style></head><body>",
             f"<h1>Sweep {html.escape(str(root))}: {len(agg['rows'])} runs, "
             f"{len(agg['groups'])} cells</h1>"]
    if png:
        parts.append(_img(png, "phase diagram: class, t_mem, t_gen per cell"))
    else:
        parts.append("<p>More than two keys vary: no diagram, see the table.</p>")
    parts.append(f"<h2>Table</h2><pre>{html.escape(format_table(agg))}</pre>")
    parts.append("<p>cells.csv and aggregate.json hold the same numbers.</p></body></html>")
    path = os.path.join(out, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path


def aggregate_dir(root, out=None, config: AnalysisConfig = AnalysisConfig()) -> list[str]:
    """Analyze every finished run under ``root``; write the diagram, tables and page."""
    if not os.path.isdir(str(root)):
        raise ValueError(f"{root}: no such directory; pass a sweep directory (phasewatch sweep --out)")
    runs, params = collect_runs(root)
    if not runs:
        raise ValueError(f"{root}: no finished runs (no run directory with trace.sqlite, and no "
                         f"done trial in sweep.sqlite)")
    agg = aggregate_results([analyze_run(r, config) for r in runs], params)
    out = str(out or os.path.join(str(root), "aggregate"))
    os.makedirs(out, exist_ok=True)
    paths = [write_aggregate(agg, out), write_cells_csv(agg, os.path.join(out, "cells.csv"))]
    png = draw_diagram(agg, os.path.join(out, "phase_diagram.png"))
    paths += [p for p in (png, _html(agg, png, out, root)) if p]
    return paths

"""Several runs: seeds of one config (spread of each event step over seeds) and sweeps.

Two uncertainties, named apart (docs/science.md#events-run-classes-and-intervals): each row
keeps every event's MEASUREMENT interval (``rows[].intervals``: where the event of that one
run may lie, from its evaluation grid and noise); each group of seeds reports the ACROSS-SEED
SPREAD of the event step (``groups[].spread[event]``: n, min, q25, median, q75, max, geometric
mean, log10 std) -- how much the event moves from seed to seed.

Runs are grouped by their hyperparameters minus any key whose last part contains
``seed``. Hyperparameters come from ``RUN/config.yaml`` (flattened with dots) or the
run's meta. Each group has its class counts, the majority class and the share of seeds that
agree with it (``agreement``), how many runs are censored, and event-step statistics. When
exactly two hyperparameters vary, ``phase_diagram`` holds the majority class on their grid.

Example:
    >>> from phasewatch.analysis.synthetic import make_run
    >>> from phasewatch.analysis.analyzer import analyze_trace
    >>> rs = [analyze_trace(make_run("grokking", s).trace) for s in range(2)]
    >>> agg = aggregate_results(rs, [{"seed": 0}, {"seed": 1}])
    >>> agg["groups"][0]["n"], agg["groups"][0]["classes"]
    (2, {'grokking': 2})
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter

import numpy as np

__all__ = ["EVENT_COLUMNS", "run_params", "aggregate_results", "format_table", "write_aggregate"]

EVENT_COLUMNS = ("memorization", "generalization", "generalization_onset",
                 "generalization_midpoint", "generalization_completion", "train_acc_fall",
                 "best_val_plateau")


def _flatten(d, prefix=""):
    out = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


IGNORED = {"default_root_dir", "name", "version", "run_id", "created_at", "sessions", "status",
           "last_checkpoint", "dirpath", "save_dir", "ckpt_path", "_instantiator", "imported_from"}


def _keep(key: str) -> bool:
    return key.rsplit(".", 1)[-1] not in IGNORED and not key.startswith(("trainer.logger", "trainer.callbacks"))


def run_params(run_dir) -> dict:
    """Flattened hyperparameters of a run: ``config.yaml`` if present, else meta ``hparams``.

    Bookkeeping keys (paths, names, timestamps, loggers, callbacks) are left out so they do
    not count as swept hyperparameters.
    """
    path = os.path.join(str(run_dir), "config.yaml")
    if os.path.exists(path):
        import yaml
        with open(path) as f:
            try:
                cfg = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({e})") from e
        if isinstance(cfg, dict):
            return {k: v for k, v in _flatten(cfg).items() if _keep(k)}
    try:
        from .store_read import load_run
        hp = load_run(run_dir).meta.get("hparams") or {}
    except (ValueError, OSError):
        return {}
    return {k: v for k, v in _flatten(hp if isinstance(hp, dict) else {}).items() if _keep(k)}


def _is_seed(key: str) -> bool:
    return "seed" in key.rsplit(".", 1)[-1].lower()


def _stats(steps):
    steps = [s for s in steps if s is not None]
    if not steps:
        return None
    a = np.asarray(steps, dtype=float)
    lg = np.log10(np.maximum(a, 0.5))
    q25, med, q75 = (float(q) for q in np.quantile(a, (0.25, 0.5, 0.75)))
    return {"n": int(a.size), "min": int(a.min()), "q25": q25, "median": med, "q75": q75,
            "max": int(a.max()), "geo_mean": float(10 ** lg.mean()),
            "log10_std": float(lg.std(ddof=1)) if a.size > 1 else 0.0}


def aggregate_results(results, params: list[dict] | None = None) -> dict:
    """Table rows per run, groups of seeds with event-step statistics, optional phase diagram."""
    params = params or [{} for _ in results]
    if len(params) != len(results):
        raise ValueError(f"{len(params)} params for {len(results)} results")
    keys = sorted({k for p in params for k in p})
    varying = [k for k in keys if len({json.dumps(p.get(k), default=str) for p in params}) > 1
               and not _is_seed(k)]
    rows = []
    for res, p in zip(results, params):
        row = {"run": res.run, "run_class": res.run_class, "censored": res.censored,
               "flags": list(res.flags), "params": {k: p.get(k) for k in varying}, "intervals": {}}
        for name in EVENT_COLUMNS:
            e = res.event(name)
            row[name] = None if e is None else e.step
            row["intervals"][name] = None if e is None else [e.low, e.high]
        rows.append(row)
    groups: dict = {}
    for row in rows:
        key = json.dumps(row["params"], sort_keys=True, default=str)
        groups.setdefault(key, []).append(row)
    out_groups = []
    for key, rs in groups.items():
        classes = Counter(r["run_class"] for r in rs)
        majority, count = classes.most_common(1)[0]
        out_groups.append({"params": json.loads(key), "n": len(rs), "classes": dict(classes),
                           "majority_class": majority, "agreement": count / len(rs),
                           "censored": sum(bool(r["censored"]) for r in rs),
                           "spread": {n: _stats([r[n] for r in rs]) for n in EVENT_COLUMNS}})
    diagram = None
    if len(varying) == 2:
        a, b = varying
        xs = sorted({r["params"][a] for r in rows}, key=_sort_key)
        ys = sorted({r["params"][b] for r in rows}, key=_sort_key)
        grid = [[None for _ in xs] for _ in ys]
        for g in out_groups:
            grid[ys.index(g["params"][b])][xs.index(g["params"][a])] = g["majority_class"]
        diagram = {"x": a, "y": b, "x_values": xs, "y_values": ys, "classes": grid}
    return {"varying": varying, "rows": rows, "groups": out_groups, "phase_diagram": diagram}


def _sort_key(v):
    return (0, float(v), "") if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, 0.0, str(v))


def _fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if math.isfinite(v) else "-"
    return str(v)


def format_table(agg: dict) -> str:
    """Plain-text table: one line per run, then one per group with median event steps."""
    cols = ["run_class", *EVENT_COLUMNS[:3]]
    head = ["run", *agg["varying"], *cols]
    lines = ["  ".join(f"{h:>14}" for h in head)]
    for r in agg["rows"]:
        name = os.path.basename(str(r["run"]).rstrip("/")) if r["run"] else "-"
        vals = [name, *[_fmt(r["params"].get(k)) for k in agg["varying"]],
                r["run_class"] + ("*" if r["censored"] else ""), *[_fmt(r[c]) for c in EVENT_COLUMNS[:3]]]
        lines.append("  ".join(f"{v:>14}" for v in vals))
    lines.append("groups (spread over seeds: median [min-max] step; * = censored):")
    for g in agg["groups"]:
        sp = g["spread"]
        lines.append(f"  {g['params'] or '(all)'} n={g['n']} classes={g['classes']} " + " ".join(
            f"{n}={_fmt(sp[n]['median'])} [{sp[n]['min']}-{sp[n]['max']}]" if sp[n] else f"{n}=-"
            for n in EVENT_COLUMNS[:2]))
    return "\n".join(lines)


def write_aggregate(agg: dict, out_dir) -> str:
    """Write ``out_dir/aggregate.json``; return its path."""
    os.makedirs(str(out_dir), exist_ok=True)
    path = os.path.join(str(out_dir), "aggregate.json")
    with open(path, "w") as f:
        json.dump(agg, f, indent=1, default=str)
    return path

"""Nanda et al. 2023: the three phases of the p = 113 grokking run, with the paper's init.

``run(quick, out_dir)`` trains ``sweeps/nanda_p113.yaml`` (``configs/nanda_p113.yaml``,
``init: nanda``), analyzes it and compares the ends of memorization, circuit formation and
cleanup with the paper's 1.4k / 9.4k / 14k. A phase whose signature fails keeps its place
(the segment the analyzer expected there) and is marked unnamed.

Example:
    $ python scripts/reproduce.py nanda --quick
"""
from __future__ import annotations

import subprocess
import sys
import time

from phasewatch.analysis import load_run
from reproductions import common

SPEC = "sweeps/nanda_p113.yaml"
PAPER_ENDS = {"memorization": 1400, "circuit_formation": 9400, "cleanup": 14000}
PAPER_K = [14, 35, 41, 42, 52]
QUICK_STEPS = 2000
MATCH_FACTOR = 1.5  # a boundary "matches" within this factor of the paper's (fixed before running)


def phase_rows(phases: dict) -> list[dict]:
    """One row per paper phase: our segment (named, or the one expected there) and its end.

    Example:
        >>> ph = {"phases": [{"name": "memorization", "expected": "memorization", "start": 0,
        ...        "end": 1500}], "boundaries": [{"step": 1500, "low": 1400, "high": 1600}]}
        >>> phase_rows(ph)[0]["ratio"], phase_rows(ph)[1]["ours_end"]
        (1.07, None)
    """
    ours = {}
    for p in phases.get("phases") or []:
        key = p["name"] or p["expected"]
        if key in PAPER_ENDS and key not in ours:
            ours[key] = p
    bounds = {b["step"]: b for b in phases.get("boundaries") or []}
    rows = []
    for name, paper_end in PAPER_ENDS.items():
        p = ours.get(name)
        b = bounds.get(p["end"]) if p else None
        rows.append({
            "phase": name, "paper_end": paper_end,
            "ours": None if p is None else (p["name"] or f"unnamed ({'; '.join(p['failed'])})"),
            "ours_end": None if b is None else b["step"],
            "interval": None if b is None else f"[{b['low']}, {b['high']}]",
            "ratio": None if b is None else round(b["step"] / paper_end, 2),
        })
    return rows


def inner_boundaries(phases: dict) -> str:
    """The segment boundaries that end no phase, each with the phase it falls inside.

    Example:
        >>> ph = {"phases": [{"name": "cleanup", "expected": "cleanup", "start": 800, "end": 5000}],
        ...       "boundaries": [{"name": None, "step": 3900, "low": 3800, "high": 4000},
        ...                      {"name": "cleanup_end", "step": 5000, "low": 4900, "high": 5100}]}
        >>> inner_boundaries(ph)
        '3,900 [3800, 4000] inside cleanup'
    """
    out = []
    for b in phases.get("boundaries") or []:
        if b["name"] is None:
            inside = [p["name"] or "an unnamed phase" for p in phases.get("phases") or []
                      if p["start"] < b["step"] < p["end"]]
            out.append(f"{b['step']:,} [{b['low']}, {b['high']}]"
                       + (f" inside {inside[0]}" if inside else ""))
    return "; ".join(out)


def verdict(rows: list[dict]) -> str:
    named = [r for r in rows if r["ours"] and not r["ours"].startswith("unnamed")]
    close = [r for r in named if r["ratio"] and 1 / MATCH_FACTOR <= r["ratio"] <= MATCH_FACTOR]
    if len(close) == len(rows):
        return "reproduced"
    return "partly" if named else "not reproduced"


def run(quick: bool, out_dir: str) -> dict:
    t0 = time.time()
    patch = {"set": {"trainer.max_steps": QUICK_STEPS}} if quick else None
    run_dir = common.run_sweep(SPEC, out_dir, workers=1, patch=patch)[0]
    analysis = common.analysis_json(run_dir)
    with load_run(run_dir) as trace:
        status = dict(trace.meta).get("circuit/progress_measures") or {}
    last_step = int(analysis["budget"])
    k = status.get("key_freqs") or "none (the final model has none)"
    rows = phase_rows(analysis["phases"])
    fig = common.figure_path(f"nanda_progress{'.quick' if quick else ''}.png")
    subprocess.run([sys.executable, str(common.REPO / "scripts" / "plot_progress.py"),
                    str(run_dir), str(fig)], check=True, env=common.env(), capture_output=True)
    mem, gen = (common.event_step(analysis, n) for n in ("memorization", "generalization"))
    rows.append({"phase": "val acc >= 0.99 (generalization)", "paper_end": 14000, "ours": None,
                 "ours_end": gen, "interval": None, "ratio": gen and round(gen / 14000, 2)})
    v = verdict(rows[:3])
    why = (f"Key frequencies K = {k} (paper {PAPER_K} for its seed; a different seed's K differs). "
           f"Memorized at step {mem}, generalized at {gen} (paper: test loss collapses by ~14k). "
           f"A boundary matches when a phase is named by its signature and ends within a "
           f"factor {MATCH_FACTOR} of the paper's (rule fixed before the run). The paper's torch "
           "seed is not set in its code, so its exact weights cannot be drawn; init nanda has "
           "its distributions and draw order; the split is ours (a seeded permutation, not "
           "Python's random.shuffle), the loss is over p classes (the paper's also scores '=').")
    inner = inner_boundaries(analysis["phases"])
    if inner:
        why += (f" Segment boundaries that end no phase (the analyzer joined the segments on "
                f"either side into one phase): {inner}.")
    if quick:
        why += f" Quick scale: {QUICK_STEPS} steps only, so the later phases cannot appear."
    if not quick and last_step < 20000:
        why += f" The run ended at step {last_step:,}, short of 20k; a phase end after it is not measured."
    return {
        "name": "nanda", "title": "Nanda et al. 2023: progress measures and phases (p = 113)",
        "paper": "Nanda, Chan, Lieberum, Smith, Steinhardt. Progress measures for grokking via "
                 "mechanistic interpretability. ICLR 2023.",
        "setup_paper": "1-layer transformer (d_model 128, 4 heads, d_mlp 512, no LayerNorm), "
                       "(x + y) mod 113, 30 % of pairs for training, AdamW lr 1e-3, wd 1, "
                       "betas (0.9, 0.98), full batch, 40k epochs; phase ends 1.4k / 9.4k / 14k "
                       f"epochs; K {PAPER_K}.",
        "setup_ours": f"configs/nanda_p113.yaml with init nanda, trained on CPU (one thread), "
                      f"{'%d steps' % QUICK_STEPS if quick else 'up to 20k steps'}; phases from "
                      "`phasewatch analyze` (final-K restricted / excluded loss, weight norm, "
                      "Gini), boundary intervals from the jackknife and bootstrap of the probes.",
        "scale": "quick" if quick else "full", "seeds": [0], "table": rows, "verdict": v,
        "why": why, "figures": [common.relative(fig)],
        "command": f"python scripts/reproduce.py nanda{' --quick' if quick else ''}",
        "measured_at": common.today(),
        "wall_s": max(round(time.time() - t0, 1), common.sweep_wall_s(out_dir)),
    }

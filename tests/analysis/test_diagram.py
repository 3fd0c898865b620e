"""`phasewatch aggregate` on a sweep directory of synthetic runs with known classes."""

from __future__ import annotations

import csv
import json
import os
import statistics

from phasewatch.analysis.analyzer import analyze_run
from phasewatch.analysis.cli import main
from phasewatch.analysis.diagram import cell_grid, log_spaced
from phasewatch.analysis.sweep_state import SweepState
from phasewatch.analysis.synthetic import make_run

from run_writer import write_run

# weight decay x fraction; the kind of each seed's synthetic run (its truth is the class)
KINDS = {(0.1, 0.3): ["memorization", "memorization"], (0.1, 0.5): ["memorization", "memorization"],
         (1.0, 0.3): ["grokking", "grokking"], (1.0, 0.5): ["grokking", "comprehension"],
         (10.0, 0.3): ["confusion", "confusion"], (10.0, 0.5): ["comprehension", "comprehension"]}


def _fake_sweep(root) -> dict:
    state = SweepState(root)
    truth = {}
    for (wd, frac), kinds in KINDS.items():
        for seed, kind in enumerate(kinds):
            params = {"model.weight_decay": wd, "data.frac": frac, "seed": seed}
            (tid,) = state.add_trials([params])
            run = make_run(kind, seed)
            rel = f"{tid}/fake-{tid}-20260101-000000-abcd"
            write_run(os.path.join(root, rel), run.trace)
            state.mark(tid, "done", run_dir=rel, run_class=run.truth["run_class"])
            truth[rel] = ((wd, frac), run.truth["run_class"])
    (extra,) = state.add_trials([{"model.weight_decay": 10.0, "data.frac": 0.5, "seed": 9}])
    state.mark(extra, "failed", error="boom")  # failed trials are not in the diagram
    state.close()
    return truth


def test_cells_hold_the_classes_seed_agreement_and_median_steps(tmp_path, capsys) -> None:
    root = str(tmp_path / "sweep")
    truth = _fake_sweep(root)
    assert main(["watch", root, "--once"]) == 0  # the trials' run dirs sit two levels down
    listed = [ln.split()[0] for ln in capsys.readouterr().out.splitlines() if ln.startswith("fake-")]
    assert sorted(listed) == sorted(os.path.basename(rel) for rel in truth)
    assert main(["aggregate", root, "--out", str(tmp_path / "agg")]) == 0
    with open(tmp_path / "agg" / "cells.csv") as f:
        cells = {(float(r["model.weight_decay"]), float(r["data.frac"])): r for r in csv.DictReader(f)}
    assert set(cells) == set(KINDS)
    for key, kinds in KINDS.items():
        classes = [c for (k, c) in truth.values() if k == key]
        top = max(set(classes), key=classes.count)
        assert int(cells[key]["n"]) == len(kinds) == len(classes)
        assert float(cells[key]["agreement"]) == classes.count(top) / len(classes)
        t_gen = [analyze_run(os.path.join(root, rel)).event("generalization")
                 for rel, (k, _) in truth.items() if k == key]
        reached = [e.step for e in t_gen if e is not None]
        assert cells[key]["t_gen_n"] == str(len(reached))
        if reached:
            assert float(cells[key]["t_gen_median"]) == statistics.median(reached)
    assert cells[(0.1, 0.3)]["majority_class"] == "memorization"
    assert cells[(1.0, 0.5)]["agreement"] == "0.500"
    agg = json.loads((tmp_path / "agg" / "aggregate.json").read_text())
    assert agg["varying"] == ["data.frac", "model.weight_decay"] and len(agg["rows"]) == 12
    assert (tmp_path / "agg" / "phase_diagram.png").stat().st_size > 20_000
    assert "data:image/png;base64," in (tmp_path / "agg" / "index.html").read_text()
    grid = cell_grid(agg)
    assert grid["x_values"] == [0.3, 0.5] and grid["y_values"] == [0.1, 1.0, 10.0]


def test_log_spacing_is_detected_from_the_values() -> None:
    assert log_spaced([1e-4, 3e-4, 1e-3, 3e-3]) and log_spaced([0.1, 10])
    assert not log_spaced([0.3, 0.5, 0.7]) and not log_spaced([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
    assert not log_spaced(["a", "b"]) and not log_spaced([0, 1, 10, 100])


def test_aggregate_of_a_missing_folder_is_one_line(tmp_path, capsys) -> None:
    assert main(["aggregate", str(tmp_path / "nope")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no such directory" in err[0]

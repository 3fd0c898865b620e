"""The doshi and capacity reproductions: their pure parts on hand-built cases, and (slow) the
quick runs end to end through ``scripts/reproduce.py``."""
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
from reproductions import capacity, doshi  # noqa: E402

N, XI = 200, 0.25


def _labels(seed=0):
    """Training labels of a corrupted task: true labels, assigned labels, the corrupted tag."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 97, N)
    tag = np.zeros(N, bool)
    tag[rng.permutation(N)[: int(XI * N)]] = True
    assigned = true.copy()
    assigned[tag] = (true[tag] + rng.integers(1, 97, tag.sum())) % 97   # always a wrong label
    return true, assigned, tag


def _phase(pred, test_acc, peak_train_acc=1.0, seed=0):
    true, assigned, tag = _labels(seed)
    return doshi.final_phase(test_acc, pred == assigned, pred == true, tag, peak_train_acc)


def test_each_doshi_phase_from_predictions_built_for_it():
    true, assigned, tag = _labels()
    half = tag & (np.cumsum(tag) % 2 == 0)                    # every other corrupted example
    third = (true + 50) % 97                                  # neither the true nor the assigned label
    third = np.where(third == assigned, (true + 51) % 97, third)
    mixed = np.where(half, true, assigned)                    # half the corrupted labels given up
    clean_only = np.where(tag, third, true)                   # rule on clean ones, corrupted nowhere
    assert _phase(assigned, 1.0) == "coexistence"             # memorized and generalizes
    assert _phase(true, 1.0) == "full inversion"              # every corrupted label replaced by the rule
    assert _phase(mixed, 0.99) == "partial inversion"
    assert _phase(clean_only, 0.99) == "partial inversion"    # generalizes, corrupted neither kept nor inverted
    assert _phase(assigned, 0.02) == "memorization"           # fits all, no rule
    assert _phase(third, 0.01, peak_train_acc=1.0) == "forgetting"   # fitted once, lost it, no rule
    assert _phase(third, 0.01, peak_train_acc=0.05) == "confusion"   # never fitted, no rule


def test_doshi_cutoffs_sit_at_nine_tenths():
    true, assigned, tag = _labels()
    idx = np.flatnonzero(tag)
    keep = np.where(tag, true, assigned)                      # all inverted ...
    k = int(math.ceil(0.1 * idx.size)) + 1                    # ... then > 10 % of them not
    keep[idx[:k]] = assigned[idx[:k]]
    assert _phase(keep, 1.0) == "partial inversion"
    assert _phase(true, 0.9) == "full inversion" and _phase(true, 0.89) != "full inversion"


def _rows(grid):
    return [{"corrupt": x, "wd": w, "seed": s, "phase": p} for (x, w), ps in grid.items()
            for s, p in enumerate(ps)]


PAPER_LIKE = {(0.2, 0): ["coexistence"] * 2, (0.8, 0): ["memorization"] * 2,
              (0.2, 15): ["full inversion", "partial inversion"], (0.8, 15): ["confusion"] * 2,
              (0.2, 60): ["forgetting", "confusion"], (0.8, 60): ["confusion", "forgetting"]}


def test_diagram_like_the_papers_is_reproduced():
    checks = doshi.diagram_checks(_rows(PAPER_LIKE))
    assert all(v is True for v in checks.values()), checks
    assert doshi.verdict(checks)[0] == "reproduced"


def test_full_inversion_without_weight_decay_breaks_the_diagram():
    grid = {**PAPER_LIKE, (0.2, 0): ["full inversion"] * 2}
    checks = doshi.diagram_checks(_rows(grid))
    assert checks["no_full_inversion_without_wd"] is False and checks["coexistence_at_low_xi_no_wd"] is False
    word, why = doshi.verdict(checks)
    assert word == "partly" and "failed: no_full_inversion_without_wd, coexistence_at_low_xi_no_wd" in why
    partial = doshi.diagram_checks(_rows({**PAPER_LIKE, (0.8, 0): ["partial inversion"] * 2}))
    assert partial["no_full_inversion_without_wd"] is True     # partial inversion needs no weight decay
    assert partial["memorization_at_high_xi_no_wd"] is False
    assert doshi.majority(_rows({(0.5, 3): ["confusion", "coexistence", "coexistence"]})) == \
        {(0.5, 3): "coexistence"}


def test_memorized_bits_by_hand():
    # V = 16, L = 4: 16 bits per pair. Mean NLL per position (nats): 0 -> 16 bits stored;
    # ln 16 (uniform) -> 0; ln 16 / 2 -> 8; 2 ln 16 (worse than uniform) -> 0, not -16.
    ln16 = math.log(16)
    loss = np.array([[ln16, ln16, ln16, ln16],                # step 0: nothing stored
                     [0.0, ln16, ln16 / 2, 2 * ln16]])        # last evaluation
    correct = np.array([[0, 0, 0, 0], [1, 0, 0, 0]])
    c = capacity.cell_bits([0, 100], loss, correct, vocab=16, out_len=4, n_params=12)
    assert c["bits"] == pytest.approx(24.0)
    assert c["bits_per_param"] == pytest.approx(2.0)
    assert c["recall_bits"] == 16 and c["still_rising"] is True
    flat = capacity.cell_bits([0, 10, 20, 40, 80, 100], np.vstack([loss[1]] * 6), np.vstack([correct[1]] * 6), 16, 4, 12)
    assert flat["bits"] == pytest.approx(24.0) and flat["still_rising"] is False
    late = capacity.cell_bits([0, 10, 90, 100], loss[[0, 0, 0, 1]], correct[[0, 0, 0, 1]], 16, 4, 12)
    assert late["still_rising"] is True                       # 0 bits at step 80's evaluation (10)


def test_capacity_is_the_best_cell_that_exceeds_the_model():
    rows = [{"params": 100, "pairs": 10, "bits_per_param": 1.6, "exceeds_model": False},   # data too small
            {"params": 100, "pairs": 50, "bits_per_param": 2.4, "exceeds_model": True},
            {"params": 100, "pairs": 90, "bits_per_param": 2.2, "exceeds_model": True},
            {"params": 400, "pairs": 90, "bits_per_param": 2.9, "exceeds_model": True}]
    rows = [{**r, "still_rising": False} for r in rows]
    caps = capacity.capacities(rows)
    assert caps == {100: (2.4, 50, False), 400: (2.9, 90, False)}
    assert capacity.verdict(caps)[0] == "reproduced"          # both in the band, spread x1.21
    word, why = capacity.verdict({**caps, 400: (2.9, 90, True)})
    assert word == "partly" and "lower bounds" in why          # not saturated: no full verdict
    assert capacity.verdict({100: (1.2, 50, False), 400: (1.3, 90, False)})[0] == "partly"  # linear, below
    assert capacity.verdict({100: (1.0, 50, False), 400: (2.5, 90, False)})[0] == "not reproduced"
    assert capacity.verdict({})[0] == "not reproduced"


def _quick(name, tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "reproduce.py"), name, "--quick",
                           "--out", str(tmp_path / "runs"), "--docs", str(tmp_path)],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "reproductions" / f"{name}.quick.json").read_text())
    assert result["scale"] == "quick" and all((REPO / f).is_file() for f in result["figures"])
    return result


@pytest.mark.slow
def test_doshi_quick_end_to_end(tmp_path):
    result = _quick("doshi", tmp_path)
    rows = result["table"]
    assert len(rows) == 9 and all(r["phase"] in doshi.PHASES for r in rows)
    for r in rows:   # each row's accuracies are what its phase says (a second reading of the same numbers)
        assert (r["phase"] in ("coexistence", "partial inversion", "full inversion")) == (r["test_acc"] >= 0.9)
        assert r["train_acc"] == pytest.approx((1 - r["corrupt"]) * r["clean_acc"]
                                               + r["corrupt"] * r["corrupted_memorized"], abs=2e-3)
    assert {(r["corrupt"], r["wd"]) for r in rows} == {(x, w) for x in (0.2, 0.5, 0.8) for w in (0, 5, 20)}


@pytest.mark.slow
def test_capacity_quick_end_to_end(tmp_path):
    result = _quick("capacity", tmp_path)
    rows = result["table"]
    assert len(rows) == 9
    for r in rows:
        assert 0 <= r["bits"] <= r["offered_bits"] == r["pairs"] * 16
    for run in (tmp_path / "runs").glob("*/*/analysis/analysis.json"):    # the analyzer's own count
        cap = json.loads(run.read_text())["memorization"]["capacity"]
        assert any(abs(cap["bits_final"] - r["bits"]) < 1e-3 * r["offered_bits"] for r in rows)
    by = {(r["params"], r["pairs"]): r["bits"] for r in rows}
    small, *_, big = sorted({r["params"] for r in rows})
    assert by[(big, 6000)] > by[(small, 6000)]                 # a larger model stores more

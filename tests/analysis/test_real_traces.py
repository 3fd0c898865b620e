"""Real traces of the built-in config A and its wd 0, wd 30 and frac 0.9 variants, the small
transformer (config C) and the corrupted-label quadratic MLP (long CSV).

Produced with `PHASEWATCH_TRACKING=0 phasewatch fit --config configs/modadd_mlp.yaml
[--model.weight_decay 0 | --model.weight_decay 30 | --data.frac 0.9]` (seed 0, up to 4000 steps
(wd 30: `--trainer.max_steps 2000 --run.tracking false --run.wandb disabled`), evaluation every 20 steps) on the 2-core CPU,
then `step,name,value` rows of train/val accuracy and loss. They exercise the analyzer on
real (not synthetic) curves without training anything. corrupted_modadd_seed0.csv:
`phasewatch fit --config configs/corrupted_modadd.yaml --run.wandb disabled` (600 steps,
evaluation every 5), scalar series only. Expected steps are computed here from the CSV.
"""
import csv
from pathlib import Path

import numpy as np
import pytest

from phasewatch.analysis import analyze_run
from phasewatch.analysis.importers import import_csv

DATA = Path(__file__).parent / "data"


def _series(name, key):
    with open(DATA / name) as f:
        rows = [(int(r["step"]), float(r["value"])) for r in csv.DictReader(f) if r["name"] == key]
    s, v = np.array(rows).T
    return s, v


def crossing(name, key, thr=0.99, stay=True, hysteresis=0.02):
    """The threshold step computed here from the CSV, independently of the analyzer: running
    median of 5 (edges repeated) with numpy, first reach (or reach after the last fall below
    thr - hysteresis), linear interpolation between the two bracketing evaluations."""
    s, v = _series(name, key)
    m = np.median(np.lib.stride_tricks.sliding_window_view(np.pad(v, 2, mode="edge"), 5), axis=1)
    start = int(np.flatnonzero(m < thr - hysteresis)[-1]) + 1 if stay else 0
    i = start + int(np.argmax(m[start:] >= thr))
    return s[i - 1] + (thr - m[i - 1]) / (m[i] - m[i - 1]) * (s[i] - s[i - 1])


def assert_at(event, t):
    """The event is dated at the crossing ``t`` and its interval holds the bracketing evaluations."""
    assert event.step == round(t) and event.low <= event.evidence["bracket"][0] < t <= event.high


@pytest.fixture
def real(tmp_path):
    def _load(name):
        return analyze_run(import_csv(DATA / name, tmp_path / name.replace(".csv", "")))
    return _load


def test_config_a_groks(real):
    res = real("configA_seed0.csv")
    assert res.run_class == "grokking" and not res.censored and res.flags == ()
    name = "configA_seed0.csv"
    assert_at(res.event("memorization"), crossing(name, "train/acc", stay=False))
    assert_at(res.event("generalization"), crossing(name, "val/acc"))
    assert abs(res.event("memorization").step - 140) <= 20   # docs: memorizes at ~140
    on, mid, done = (res.event(f"generalization_{k}").step for k in ("onset", "midpoint", "completion"))
    assert 1200 < on < mid < done < 3060
    assert res.thresholds["0.9"]["generalization"]["step"] < res.thresholds["0.95"]["generalization"]["step"] < 3060


def test_config_a_without_weight_decay_memorizes_with_a_slingshot(real):
    res = real("configA_wd0_seed0.csv")
    assert res.run_class == "memorization" and not res.censored
    assert res.event("generalization") is None
    assert "slingshot" in res.flags
    spike = res.event("slingshot")
    s, loss = _series("configA_wd0_seed0.csv", "train/loss")
    late = s > 1000                                        # after the loss reached its floor
    assert spike.step == s[late][np.argmax(loss[late])] and spike.evidence["decades_above_median"] > 2


def test_config_a_frac_09_comprehends(real):
    res = real("configA_frac09_seed0.csv")                 # stopped at step 2760 (SIGTERM)
    assert res.run_class == "comprehension" and not res.censored
    name = "configA_frac09_seed0.csv"
    t_mem, t_gen = crossing(name, "train/acc", stay=False), crossing(name, "val/acc")
    assert_at(res.event("memorization"), t_mem)
    assert_at(res.event("generalization"), t_gen)
    assert res.config["gap_ratio"] == pytest.approx(round(t_gen) / round(t_mem)) and res.config["gap_ratio"] < 5.0


def test_config_a_weight_decay_30_is_confusion(real):
    """Weight decay 30 keeps the weights too small to fit anything: train and val accuracy stay
    at chance (1/59 ~ 0.017, max 0.047 / 0.022) and the loss at ~ln 59 for all 2000 steps."""
    res = real("configA_wd30_seed0.csv")
    assert res.run_class == "confusion" and not res.censored and res.flags == ()
    assert res.event("memorization") is None and res.event("generalization") is None
    assert all(not e.name.startswith(("memorization", "generalization")) for e in res.events)


def test_small_transformer_symmetry_plateau(real):
    """configs/modadd_transformer_small.yaml (seed 0), stopped at step 2820; progress measures
    from the default callbacks. Shared embeddings: val acc sits at ~0.46 (the training
    fraction) from memorization until the real rise (SCIENCE.md pitfall). Its circuit measures
    use the per-checkpoint K (recorded before the final-K recompute), so its Nanda phases are
    not tested here: tests/analysis/test_phases_real.py runs C' with the final K."""
    res = real("transformer_small_seed0.csv")
    name = "transformer_small_seed0.csv"
    assert res.run_class == "grokking"
    assert_at(res.event("memorization"), crossing(name, "train/acc", stay=False))
    assert_at(res.event("generalization"), crossing(name, "val/acc"))
    assert 500 < res.event("generalization_onset").step < 700    # the final rise, not the plateau


def test_corrupted_labels_memorized_then_inverted(real):
    """Train accuracy reaches 0.99, then weight decay gives up the 35 % corrupted labels: it
    falls to ~0.65 while val accuracy reaches 1. The run memorized (event kept), the fall is
    its own event, and the class is Liu's rule on the first reach, flagged ``inversion``."""
    name = "corrupted_modadd_seed0.csv"
    res = real(name)
    s, train = _series(name, "train/acc")
    mem, fall = res.event("memorization"), res.event("train_acc_fall")
    assert_at(mem, crossing(name, "train/acc", stay=False))
    assert train.max() > 0.99 and train[-1] < 0.7
    assert fall.step > mem.step and fall.evidence["final"] == pytest.approx(np.median(train[-5:]), abs=0.01)
    assert "inversion" in res.flags and "inconsistent" not in res.class_reason
    for v in res.verdicts:   # each verdict: Liu's rule on the crossings computed from the CSV
        t_tr = round(crossing(name, "train/acc", v["threshold"], stay=False))
        t_va = round(crossing(name, "val/acc", v["threshold"]))
        assert (v["t_train"], v["t_val"]) == (t_tr, t_va)
        assert v["class"] == ("grokking" if t_va / t_tr >= 5 else "comprehension")
    assert res.run_class == res.verdicts[0]["class"] and [v["threshold"] for v in res.verdicts] == [0.99, 0.9]

"""Real traces of the built-in config A (SCIENCE.md) and its wd 0, wd 30 and frac 0.9 variants (long CSV).

Produced with `PHASEWATCH_TRACKING=0 phasewatch fit --config configs/modadd_mlp.yaml
[--model.weight_decay 0 | --model.weight_decay 30 | --data.frac 0.9]` (seed 0, up to 4000 steps
(wd 30: `--trainer.max_steps 2000 --run.tracking false --run.wandb disabled`), evaluation every 20 steps) on the 2-core CPU,
then `step,name,value` rows of train/val accuracy and loss. They exercise the analyzer on
real (not synthetic) curves without training anything.
"""
from pathlib import Path

import pytest

from phasewatch.analysis import analyze_run
from phasewatch.analysis.importers import import_csv

DATA = Path(__file__).parent / "data"


@pytest.fixture
def real(tmp_path):
    def _load(name):
        return analyze_run(import_csv(DATA / name, tmp_path / name.replace(".csv", "")))
    return _load


def test_config_a_groks(real):
    res = real("configA_seed0.csv")
    assert res.run_class == "grokking" and not res.censored and res.flags == ()
    assert res.event("memorization").step == 140          # SCIENCE.md: memorize ~140
    assert res.event("generalization").step == 3060       # first val acc >= 0.99 that stays
    on, mid, done = (res.event(f"generalization_{k}").step for k in ("onset", "midpoint", "completion"))
    assert 1200 < on < mid < done < 3060
    assert res.thresholds["0.9"]["generalization"]["step"] < res.thresholds["0.95"]["generalization"]["step"] < 3060


def test_config_a_without_weight_decay_memorizes_with_a_slingshot(real):
    res = real("configA_wd0_seed0.csv")
    assert res.run_class == "memorization" and not res.censored
    assert res.event("generalization") is None
    assert "slingshot" in res.flags
    spike = res.event("slingshot")
    assert spike.step == 2900 and spike.evidence["decades_above_median"] > 2


def test_config_a_frac_09_comprehends(real):
    res = real("configA_frac09_seed0.csv")                 # stopped at step 2760 (SIGTERM)
    assert res.run_class == "comprehension" and not res.censored
    assert res.event("memorization").step == 180          # SCIENCE.md: memorize ~180
    assert res.event("generalization").step == 580        # SCIENCE.md: generalize ~540
    assert res.config["gap_ratio"] < 5.0


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
    assert res.run_class == "grokking" and res.event("memorization").step == 100
    assert res.event("generalization").step == 880
    assert 500 < res.event("generalization_onset").step < 700    # the final rise, not the plateau

"""Real runs of configs/induction_heads.yaml (2 layers) and its 1-layer control (slow: the 2-layer
run is minutes of one CPU core). The assertions read the run's own trace: the formation the
analyzer reports must sit where the probes show the prefix-matching score crossing half its rise.
The cheap tier-1 counterparts: tests/analysis/test_induction_trace.py, test_induction_detect.py (committed traces)."""

import glob

import numpy as np
import pytest

from phasewatch.analysis import analyze_run, load_run

pytestmark = pytest.mark.slow


def _fit(root, config, steps):
    from phasewatch.trainer.cli import main
    main(["--config", f"configs/{config}.yaml", "--trainer.default_root_dir", str(root),
          "--trainer.max_steps", str(steps), "--run.tracking", "false", "--run.wandb", "disabled",
          "--trainer.enable_progress_bar", "false"])
    return glob.glob(str(root / f"{config}-*"))[0]


@pytest.fixture(scope="module")
def two_layer(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("ind2"), "induction_heads", 1500)


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory):
    return _fit(tmp_path_factory.mktemp("ind1"), "induction_heads_1layer", 1500)


def test_two_layers_form_induction_heads(two_layer):
    # thresholds from the measured run (seed 0, configs/induction_heads.yaml, 1,500 steps)
    run = load_run(two_layer)
    s, rl = run.series("circuit/repeat_loss")
    _, tables = run.arrays("circuit/prefix_matching")  # [probes, layers, heads]
    assert rl[0] / rl[-1] >= 7.0              # measured 4.73 -> 0.65 (7.3x; 6.4x from the plateau)
    assert tables[-1, 1].max() >= 0.5         # layer-2 heads match prefixes (measured 0.61, 0.57, 0.51)
    assert tables[-1, 0].max() < 0.2          # layer 1 does not (measured <= 0.11)
    _, prev = run.arrays("circuit/prev_token")
    assert prev[-1, 0].max() >= 0.3           # layer 1 holds previous-token heads (measured 0.43)
    pm_s, pm = run.series("circuit/prefix_matching_max")
    res = analyze_run(two_layer)
    mid = res.event("induction_formation_midpoint")
    assert mid is not None and "induction_heads" in res.flags
    half = (np.median(pm[:len(pm) // 10]) + np.median(pm[-len(pm) // 10:])) / 2
    below = pm_s[pm < half]
    first_above_for_good = pm_s[pm_s > below.max()][0]
    assert mid.low <= first_above_for_good and mid.high >= below.max() - 100
    run.close()


def test_one_layer_control_has_no_formation(one_layer):
    run = load_run(one_layer)
    _, pm = run.series("circuit/prefix_matching_max")
    assert pm.max() < 0.2
    res = analyze_run(one_layer)
    assert res.event("induction_formation_midpoint") is None and "induction_heads" not in res.flags
    run.close()

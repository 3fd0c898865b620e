"""scripts/llc_vs_devinterp.py: one clear line without devinterp; with it (a separate venv, see
the script), devinterp's LLC on the regular model agrees with ours and with d/2."""

import importlib.util
import math
import statistics
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "llc_vs_devinterp.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("llc_vs_devinterp", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(importlib.util.find_spec("devinterp") is not None, reason="devinterp installed")
def test_without_devinterp_says_how_to_install_it(capsys):
    assert _load_script().main([]) == 2
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "pip install 'devinterp<2'" in out


@pytest.mark.slow
def test_devinterp_agrees_with_ours_on_the_regular_model():
    pytest.importorskip("devinterp")
    import importlib.metadata

    mod = _load_script()
    theirs = mod.devinterp_1 if importlib.metadata.version("devinterp") < "2" else mod.devinterp_2
    case = mod.regular_case()
    ours_chains, _ = mod.ours(*case)
    chains, _ = theirs(*case)
    assert len(chains) == 4
    assert statistics.mean(chains) == pytest.approx(5.5, rel=0.15)  # d = 11: d/2, analytic
    sem = math.hypot(statistics.stdev(chains), statistics.stdev(ours_chains)) / 2  # 4 chains each
    assert abs(statistics.mean(chains) - statistics.mean(ours_chains)) < 3 * sem

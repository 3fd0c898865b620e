"""scripts/reproduce.py: the harness (bad NAME, the page from result JSONs) and, marked slow,
the quick reproductions themselves."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "reproduce.py"


def _script():
    spec = importlib.util.spec_from_file_location("reproduce_script", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("args", [["bogus"], []])
def test_bad_name_is_one_line_exit_2(args):
    proc = _cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "nanda, liu, power, doshi, capacity" in lines[0]
    assert "Traceback" not in proc.stderr


def _result(name, verdict, **kw):
    r = {"name": name, "title": f"{name} title", "paper": "Some et al. 2099", "setup_paper": "their p",
         "setup_ours": "our p.", "scale": "full", "seeds": [0, 7], "verdict": verdict,
         "why": f"because {name}", "figures": [f"docs/reproductions/{name}.png"],
         "command": f"python scripts/reproduce.py {name}", "measured_at": "2099-01-01",
         "wall_s": 12.0, "table": [{"cell": "a", "steps": 1234}, {"cell": "b", "steps": None}]}
    r.update(kw)
    return r


def test_page_rendered_from_the_jsons_present(tmp_path):
    rep = tmp_path / "reproductions"
    rep.mkdir()
    fig = str(rep / "liu.png")  # outside the repo: kept absolute in the JSON, relative on the page
    (rep / "liu.json").write_text(json.dumps(_result("liu", "partly", figures=[fig])))
    (rep / "power.quick.json").write_text(json.dumps(_result("power", "reproduced", scale="quick")))
    proc = _cli("--render-only", "--docs", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "reproductions.md").read_text()
    sections = page.split("\n## ")[1:]
    assert [s.splitlines()[0] for s in sections] == ["nanda", "liu title", "power title", "doshi",
                                                    "capacity"]
    nanda, liu, power, doshi, capacity = sections
    for missing, name in ((nanda, "nanda"), (doshi, "doshi"), (capacity, "capacity")):
        assert f"Not run yet: `python scripts/reproduce.py {name}`" in missing
    assert "**Verdict: partly.** because liu" in liu
    assert "| a | 1234 |" in liu and "| b | - |" in liu
    assert "![liu](reproductions/liu.png)" in liu  # relative to the page's folder
    assert "Seeds: 0, 7; scale: full;" in liu and "Command: `python scripts/reproduce.py liu`" in liu
    assert "scale: quick (reduced" in power


def test_full_result_wins_over_quick(tmp_path):
    rep = tmp_path / "reproductions"
    rep.mkdir()
    (rep / "nanda.json").write_text(json.dumps(_result("nanda", "partly", why="full one")))
    (rep / "nanda.quick.json").write_text(json.dumps(_result("nanda", "reproduced", scale="quick")))
    _script().render(tmp_path)
    page = (tmp_path / "reproductions.md").read_text()
    assert "full one" in page and "**Verdict: reproduced.**" not in page


def test_result_contract_checked():
    sys.path.insert(0, str(REPO / "scripts"))
    from reproductions.common import check_result
    assert check_result(_result("liu", "partly")) == []
    wrong = check_result({**_result("liu", "sort of"), "scale": "tiny"})
    assert any("verdict 'sort of'" in w for w in wrong) and any("scale 'tiny'" in w for w in wrong)
    assert check_result({"name": "x"})[0] == "missing key 'title'"


QUICK_ROWS = {"nanda": 4, "liu": 9, "power": 3}  # paper phases + generalization; 3 x 3 cells; 3 fractions


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(QUICK_ROWS))
def test_quick_reproduction_writes_json_figure_and_page(tmp_path, name):
    """A real quick run (minutes): the JSON keeps the contract, its figure exists, the page shows it."""
    proc = subprocess.run([sys.executable, str(SCRIPT), name, "--quick", "--docs", str(tmp_path),
                           "--out", str(tmp_path / "runs")], cwd=REPO, capture_output=True,
                          text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "reproductions" / f"{name}.quick.json").read_text())
    sys.path.insert(0, str(REPO / "scripts"))
    from reproductions.common import check_result
    assert check_result(result) == [] and result["scale"] == "quick"
    assert len(result["table"]) == QUICK_ROWS[name]
    assert all(Path(f).exists() for f in result["figures"]) and result["figures"]
    page = (tmp_path / "reproductions.md").read_text()
    assert f"**Verdict: {result['verdict']}.**" in page
    assert page.count("Not run yet") == 4  # the four other results

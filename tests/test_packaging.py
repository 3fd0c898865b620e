"""The distribution installs as one import name with one console script, also as a wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_wheel_maps_the_three_folders_under_phasewatch(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path),
                    str(REPO)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("phasewatch-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("phasewatch/trainer/module.py", "phasewatch/callbacks/trace_logger.py",
                   "phasewatch/analysis/cli.py", "phasewatch/analysis/store.py"):
        assert module in names
    assert not [n for n in names if n.split("/")[0] in ("trainer", "callbacks", "analysis")]
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "phasewatch = phasewatch.analysis.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_console_script_runs_and_bare_names_are_not_importable(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("phasewatch")
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 0 and "analyze" in done.stdout and "fit" in done.stdout
    probe = ("import importlib.util as u; "
             "print([n for n in ('trainer', 'callbacks', 'analysis') if u.find_spec(n)])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.strip() == "[]"

"""`phasewatch report`: PNGs + a self-contained HTML page, rendered in headless Chromium."""
import re
import shutil
import subprocess

import pytest

from phasewatch.analysis.cli import main
from phasewatch.analysis.synthetic import make_run
from phasewatch.analysis.synthetic_examples import corrupted_examples, nanda_trace

PROBE = ('<script>window.addEventListener("load",()=>{const im=[...document.images];'
         'document.body.setAttribute("data-imgs",im.length);'
         'document.body.setAttribute("data-loaded",im.filter(i=>i.complete&&i.naturalWidth>0).length);});'
         '</script></body>')


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    from run_writer import write_run
    root = tmp_path_factory.mktemp("rep")
    runs = [write_run(root / "grok", make_run("slingshot", 0).trace),
            write_run(root / "nanda", nanda_trace(0)[0]),
            write_run(root / "noisy", corrupted_examples(0)[0])]
    assert main(["report", *map(str, runs), "--out", str(root / "out")]) == 0
    return root / "out"


def test_report_writes_pngs_and_self_contained_html(report):
    pngs = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert pngs == ["comparison.png", "grok_curves.png", "nanda_curves.png", "nanda_progress.png",
                    "noisy_curves.png", "noisy_memorization.png"]
    for p in (report / "figures").glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    page = (report / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 6
    assert not re.search(r'src="(?!data:)', page)          # nothing external
    assert "grokking" in page and "circuit_formation_end" in page


def test_single_run_report_defaults_to_run_analysis_dir(tmp_path):
    from run_writer import write_run
    run = write_run(tmp_path / "r", make_run("comprehension", 1).trace)
    assert main(["report", str(run)]) == 0
    assert (run / "analysis" / "report.html").exists() and (run / "analysis" / "analysis.json").exists()


def test_report_renders_in_headless_chromium(report, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium not installed (Debian package `chromium`)")
    probe = tmp_path / "probe.html"
    probe.write_text((report / "report.html").read_text().replace("</body>", PROBE))
    out = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                          "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                         capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", out.stdout)
    assert body, out.stderr[-2000:]
    assert 'data-imgs="6"' in body.group(0) and 'data-loaded="6"' in body.group(0), body.group(0)


def test_report_of_a_tiny_diverged_run_without_accuracies(tmp_path):
    import numpy as np
    from run_writer import write_run
    from phasewatch.analysis.memtrace import MemoryTrace
    s = np.arange(3)
    run = write_run(tmp_path / "tiny", MemoryTrace({"train/loss": (s, np.array([1.0, np.nan, 0.5]))}))
    assert main(["report", str(run)]) == 0
    page = (run / "analysis" / "report.html").read_text()
    assert "insufficient data for memorization" in page and "diverged" in page


def test_sweep_report_draws_a_phase_diagram(tmp_path):
    from run_writer import write_run
    runs = []
    for wd, frac, kind in ((0.0, 0.3, "memorization"), (1.0, 0.3, "memorization"),
                           (0.0, 0.5, "memorization"), (1.0, 0.5, "grokking")):
        run = write_run(tmp_path / f"wd{wd}_f{frac}", make_run(kind, 0).trace)
        (run / "config.yaml").write_text(f"model:\n  weight_decay: {wd}\ndata:\n  frac: {frac}\n")
        runs.append(str(run))
    assert main(["report", *runs, "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "figures" / "phase_diagram.png").stat().st_size > 5000
    assert "phase diagram" in (tmp_path / "out" / "report.html").read_text()

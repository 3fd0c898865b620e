"""phasewatch.analysis must never import torch / lightning / wandb (DESIGN.md)."""
import subprocess
import sys

FORBIDDEN = ("torch", "pytorch_lightning", "lightning", "wandb")


def test_analysis_modules_do_not_import_torch_lightning_wandb():
    code = (
        "import importlib, pkgutil, sys\n"
        "import phasewatch.analysis as pkg\n"
        "mods = [m.name for m in pkgutil.iter_modules(pkg.__path__, 'phasewatch.analysis.')]\n"
        "for m in mods:\n"
        "    importlib.import_module(m)\n"
        "from phasewatch.analysis.cli import build_parser\n"
        "build_parser().parse_args(['analyze', 'x'])\n"
        f"bad = [n for n in {FORBIDDEN!r} if n in sys.modules]\n"
        "print(len(mods), bad)\n"
        "assert len(mods) >= 8, mods\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout

"""`phasewatch fit --help` is rendered once by LightningCLI, then served from a cache without
importing torch or Lightning; the cache key follows the terminal width."""
import os
import subprocess
import sys

from phasewatch.analysis.cli import main
from phasewatch.trainer.fit_help import help_cache_file

PROBE = ("import sys; from phasewatch.analysis.cli import main; status = main(['fit', '--help']); "
         "sys.stderr.write(repr([m for m in ('torch', 'pytorch_lightning') if m in sys.modules])); "
         "sys.exit(status)")


def test_help_is_cached_and_then_served_without_torch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASEWATCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["fit", "--help"]) == 0                     # rendered by LightningCLI
    live = capsys.readouterr().out
    assert all(opt in live for opt in ("--trainer.max_steps", "--model.lr", "--run.wandb", "--data.task"))
    assert [p.name for p in tmp_path.iterdir()] == [help_cache_file().name]
    assert help_cache_file().read_text() == live
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PHASEWATCH_CACHE_DIR=str(tmp_path), COLUMNS="100"))
    assert done.returncode == 0 and done.stdout == live and done.stderr == "[]", done.stderr[-2000:]


def test_cache_key_follows_terminal_width_and_other_arguments_are_not_cached(tmp_path, monkeypatch,
                                                                             capsys):
    monkeypatch.setenv("PHASEWATCH_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("COLUMNS", "100")
    wide = help_cache_file()
    monkeypatch.setenv("COLUMNS", "60")
    assert help_cache_file() != wide
    assert main(["fit", "--trainer.max_steps", "1", "--help"]) == 0
    assert "--trainer.max_steps" in capsys.readouterr().out and not any(tmp_path.iterdir())

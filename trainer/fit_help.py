"""``phasewatch fit`` entry point with a fast ``--help``.

Lightning's import alone (torch, torch._dynamo, torchmetrics -> scipy.signal, matplotlib) is
nearly all of the time ``fit --help`` takes; phasewatch's own modules are a few percent of it.
So the help that LightningCLI renders is kept in a cache file, keyed by everything it depends
on: the versions of phasewatch, Lightning, jsonargparse, docstring-parser, torch and Python,
the bytes of this package's sources (the model, data and run options) and the terminal width.
Only a plain ``fit --help`` / ``fit -h`` is served from it; with any other argument (a
``--config`` changes the defaults shown) the help is rendered afresh. This module imports
neither torch nor Lightning unless it has to run ``fit``.

Cache folder: ``$PHASEWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/phasewatch``, else
``~/.cache/phasewatch``; an unwritable one just means no cache.

Example:
    $ phasewatch fit --help        # first time: rendered by LightningCLI (seconds), then cached
    $ phasewatch fit --help        # from the cache (a fraction of a second)
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional, Sequence

__all__ = ["main", "help_cache_file"]

HELP_ARGS = (["--help"], ["-h"])
KEYED_DISTRIBUTIONS = ("phasewatch", "pytorch-lightning", "jsonargparse", "docstring-parser", "torch")


def _cache_dir() -> Path:
    if os.environ.get("PHASEWATCH_CACHE_DIR"):
        return Path(os.environ["PHASEWATCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "phasewatch"


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "-"


def help_cache_file() -> Path:
    """The cache file of ``fit --help`` for this installation, sources and terminal width."""
    h = hashlib.sha256()
    h.update(f"{sys.version_info[:2]} {shutil.get_terminal_size().columns}".encode())
    for dist in KEYED_DISTRIBUTIONS:
        h.update(f"{dist}={_version(dist)};".encode())
    for src in sorted(Path(__file__).parent.glob("*.py")):
        h.update(src.name.encode() + src.read_bytes())
    return _cache_dir() / f"fit-help-{h.hexdigest()[:20]}.txt"


def _save(path: Path, text: str) -> None:
    """Write atomically and drop older ``fit-help-*`` files; an OSError means no cache."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        for old in path.parent.glob("fit-help-*.txt"):
            if old != path:
                old.unlink()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``phasewatch fit ARGS``: the cached help for a plain ``--help``, else trainer.cli.main."""
    argv = list(argv or [])
    cache = help_cache_file() if argv in HELP_ARGS else None
    if cache is not None and cache.is_file():
        text = None
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = cache.read_text(encoding="utf-8")
        if text:
            sys.stdout.write(text)
            return 0
    from .cli import main as fit_main  # torch and Lightning only here

    if cache is None:
        return fit_main(argv)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = fit_main(argv)
    sys.stdout.write(out.getvalue())
    if status == 0 and out.getvalue():
        _save(cache, out.getvalue())
    return status

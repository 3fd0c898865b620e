"""The W&B round trip, pull side: ``phasewatch analyze --wandb ENTITY/PROJECT/RUN_ID``.

``pull_wandb_run(path, out)`` reads a run's full history through the public API
(``wandb.Api().run(path).scan_history()``) and writes it as a phasewatch run directory via
the CSV importer (long format: step, name, value; step = ``trainer/global_step`` when the
run logged it, else ``_step``). Without credentials (no ``WANDB_API_KEY``, no ``~/.netrc``
entry for the W&B host) it raises ``WandbUnavailable`` with a one-line reason, which the CLI
prints with exit status 2. Importing this module imports neither torch nor wandb.

The push side (summary keys, events table, figures, artifact at the end of fit) lives in
``phasewatch.callbacks.wandb_push`` and runs from the ``PhaseMonitor`` callback.

Offline runs (``run.wandb: offline``, the default without credentials) live in
``runs/<id>/wandb/offline-run-*/``. View one locally (W&B LEET, a terminal UI shipped with the
wandb CLI): ``wandb leet runs/<id>/wandb`` (browse curves), or non-interactively
``wandb leet inspect --summary runs/<id>/wandb/offline-run-*`` (state, latest metrics and the
``phasewatch/*`` summary keys). Upload it later: ``wandb login`` then
``wandb sync runs/<id>/wandb/offline-run-*``.

Example:
    $ phasewatch analyze --wandb my-team/phasewatch/modadd_mlp-20261127-0230 --out runs/pulled
"""
from __future__ import annotations

import csv
import math
import netrc
import os
import re
import tempfile
from urllib.parse import urlparse

__all__ = ["WandbUnavailable", "credentials_available", "pull_wandb_run"]

_PATH = re.compile(r"^[\w.-]+/[\w.-]+/[\w.-]+$")
_DROP = {"_runtime", "_timestamp", "_step", "_wandb", "trainer/global_step", "epoch"}


class WandbUnavailable(RuntimeError):
    """W&B cannot be reached for this request (no credentials, no network, no such run)."""


def credentials_available() -> bool:
    """True when ``WANDB_API_KEY`` is set or ``~/.netrc`` has the W&B host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc().authenticators(host) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def pull_wandb_run(path: str, out: str | None = None, timeout: int = 30) -> str:
    """Pull the history of W&B run ``ENTITY/PROJECT/RUN_ID`` into run directory ``out``."""
    if not _PATH.match(path or ""):
        raise ValueError(f"--wandb expects ENTITY/PROJECT/RUN_ID, got {path!r}")
    if not credentials_available():
        raise WandbUnavailable(f"no W&B credentials (WANDB_API_KEY or ~/.netrc): cannot pull "
                               f"{path}; run `wandb login`, or export the history as CSV and use "
                               f"`phasewatch import`")
    out = out or os.path.join("runs", "wandb-" + path.rsplit("/", 1)[1])
    try:
        import wandb
        run = wandb.Api(timeout=timeout).run(path)
        rows = list(run.scan_history())
    except Exception as e:  # noqa: BLE001 - network, auth, unknown run: one clear line
        raise WandbUnavailable(f"cannot pull {path} from W&B ({type(e).__name__}: "
                               f"{str(e).splitlines()[0] if str(e) else ''})") from e
    from phasewatch.analysis.importers import import_csv
    with tempfile.TemporaryDirectory() as tmp:
        long_csv = os.path.join(tmp, "history.csv")
        n = _write_long(rows, long_csv)
        if n == 0:
            raise WandbUnavailable(f"W&B run {path} has no numeric history to analyze")
        import_csv(long_csv, out, fmt="long")
    return out


def _write_long(rows: list[dict], path: str) -> int:
    """History rows -> ``step,name,value`` CSV; returns the number of values written."""
    n = 0
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "name", "value"])
        for r in rows:
            step = r.get("trainer/global_step", r.get("_step"))
            if step is None:
                continue
            for k, v in r.items():
                if k in _DROP or isinstance(v, bool) or not isinstance(v, (int, float)):
                    continue
                if isinstance(v, float) and math.isnan(v):
                    continue
                w.writerow([int(step), k, v])
                n += 1
    return n

"""Shared helpers of the reproductions (``scripts/reproduce.py NAME``).

Every training run goes through the ``phasewatch`` CLI in a subprocess with one torch
thread and W&B off, so a reproduction measures exactly what a user's command would.

Example:
    >>> print(markdown_table([{"wd": 1, "class": "grokking"}, {"wd": 0.1, "class": None}]))
    | wd | class |
    |---|---|
    | 1 | grokking |
    | 0.1 | - |
"""
from __future__ import annotations

import datetime
import glob
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Optional

import yaml

REPO = Path(__file__).resolve().parents[2]
RESULT_KEYS = ("name", "title", "paper", "setup_paper", "setup_ours", "scale", "seeds", "table",
               "verdict", "why", "figures", "command", "measured_at", "wall_s")
VERDICTS = ("reproduced", "partly", "not reproduced")


def env() -> dict:
    """The environment of every training subprocess: one thread, W&B off."""
    e = dict(os.environ)
    e.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PHASEWATCH_THREADS="1",
             WANDB_MODE="disabled")
    return e


def workers() -> int:
    """Sweep workers for a reproduction: ``reproduce.py --workers`` (env
    ``PHASEWATCH_REPRO_WORKERS``), default 1 (the machine may be shared)."""
    return int(os.environ.get("PHASEWATCH_REPRO_WORKERS", "1"))


def phasewatch(*args: str) -> None:
    """Run ``phasewatch ARGS...`` from the repository root; raise with its stderr tail if it fails."""
    cmd = [sys.executable, "-m", "phasewatch.analysis.cli", *map(str, args)]
    proc = subprocess.run(cmd, cwd=REPO, env=env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"`phasewatch {' '.join(map(str, args))}` exited {proc.returncode}: "
                           + " | ".join(tail))


def run_fit(config: str, root_dir: str, overrides: Optional[dict] = None) -> Path:
    """Train ``config`` once under ``root_dir`` (``--key value`` overrides); return the run dir."""
    args = ["fit", "--config", config, "--trainer.default_root_dir", root_dir,
            "--run.wandb", "disabled", "--trainer.enable_progress_bar", "false"]
    for key, value in (overrides or {}).items():
        args += [f"--{key}", json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    phasewatch(*args)
    return Path(root_dir, "latest").resolve()


def run_sweep(spec: str, out_dir: str, workers: int = 1, patch: Optional[dict] = None) -> list[Path]:
    """Run sweep ``spec`` into ``out_dir`` (resumable: finished trials are not trained again).

    ``patch`` replaces top-level spec keys (``grid``, ``seeds``) and is merged into ``set``;
    the patched spec is written to ``out_dir/spec.yaml``. Returns the trials' run directories.
    """
    if patch:
        with open(REPO / spec) as f:
            data = yaml.safe_load(f)
        data["base"] = str((REPO / spec).parent.joinpath(data["base"]).resolve())
        data.update({k: v for k, v in patch.items() if k != "set"})
        data["set"] = {**data.get("set", {}), **patch.get("set", {})}
        os.makedirs(out_dir, exist_ok=True)
        spec = str(Path(out_dir, "spec.yaml").resolve())
        with open(spec, "w") as f:
            yaml.safe_dump(data, f, sort_keys=False)
    phasewatch("sweep", spec, "--out", out_dir, "--workers", str(workers))
    return trial_runs(out_dir)


def trial_runs(sweep_dir: str) -> list[Path]:
    """Run directories of a sweep's trials (``SWEEP/<trial>/<run>``), sorted."""
    found = glob.glob(os.path.join(sweep_dir, "*", "*", "config.yaml"))
    return sorted(Path(p).parent for p in found if not Path(p).parent.is_symlink())


def analysis_json(run_dir: Path, *options: str) -> dict:
    """``phasewatch analyze RUN [options]`` and its ``RUN/analysis/analysis.json``."""
    phasewatch("analyze", str(run_dir), *options)
    with open(Path(run_dir, "analysis", "analysis.json")) as f:
        return json.load(f)


def aggregate_json(sweep_dir: str, out_dir: str, *options: str) -> dict:
    """``phasewatch aggregate SWEEP --out OUT [options]`` and its ``OUT/aggregate.json``."""
    phasewatch("aggregate", sweep_dir, "--out", out_dir, *options)
    with open(Path(out_dir, "aggregate.json")) as f:
        return json.load(f)


def run_config(run_dir: Path) -> dict:
    """The run's resolved ``config.yaml``."""
    with open(Path(run_dir, "config.yaml")) as f:
        return yaml.safe_load(f)


def event_step(analysis: dict, name: str) -> Optional[int]:
    """Step of event ``name`` in an analysis.json dict, or None if it did not happen."""
    for e in analysis.get("events", []):
        if e.get("name") == name:
            return e.get("step")
    return None


def markdown_table(rows: list[dict], columns: Optional[Iterable[str]] = None) -> str:
    """Rows of dicts as a markdown table (None shows as '-'); columns default to the first row's."""
    cols = list(columns or (rows[0] if rows else []))
    cell = lambda v: "-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def figure_path(name: str) -> Path:
    """Where figure ``name`` goes: ``DOCS/reproductions/NAME`` (DOCS: ``reproduce.py --docs``,
    env ``PHASEWATCH_REPRO_DOCS``, default the repo's ``docs/``), folder created."""
    folder = Path(os.environ.get("PHASEWATCH_REPRO_DOCS", REPO / "docs"), "reproductions")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def relative(path: Path) -> str:
    """``path`` relative to the repository root (how results name their figures); absolute
    when it lies outside the repository."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")


def check_result(result: Any) -> list[str]:
    """What is wrong with a reproduction's result dict (empty when it keeps the contract)."""
    if not isinstance(result, dict):
        return [f"run() returned {type(result).__name__}, not a dict"]
    wrong = [f"missing key {k!r}" for k in RESULT_KEYS if k not in result]
    if result.get("verdict") not in VERDICTS:
        wrong.append(f"verdict {result.get('verdict')!r} is not one of {VERDICTS}")
    if result.get("scale") not in ("quick", "full"):
        wrong.append(f"scale {result.get('scale')!r} is not 'quick' or 'full'")
    return wrong

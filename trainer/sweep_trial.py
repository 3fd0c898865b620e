"""One sweep trial, run inside a long-lived Dask worker: train (or resume) it, then classify it.

The trial's folder ``SWEEP_DIR/<trial id>/`` is an ordinary ``trainer.default_root_dir``: it
holds one run directory ``<sweep>-<trial id>-<version>/`` (trace store, config, checkpoints,
W&B files), ``attempt.json`` (host, pid and start of the attempt now running) and
``fit.log`` (what the attempts printed, appended). A new
attempt continues the run directory from its last checkpoint (``--run.resume``); a run
directory without a checkpoint is removed and the trial starts over; a run that already
finished is only classified.

Example (what the driver submits):
    >>> run_trial("sweeps/out", "t003", ["--config", "configs/modadd_mlp.yaml"],
    ...           name="wd_frac", cores=1)                                # doctest: +SKIP
    {'run_dir': 'sweeps/out/t003/wd_frac-t003-2026...', 'run_class': 'grokking', 'trained': True, ...}
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Optional

__all__ = ["run_trial", "existing_run", "stop_worker_profiler"]


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()) if root.is_dir() else []


def _meta(run_dir: Path, key: str):
    from phasewatch.analysis.store_read import load_run
    try:
        trace = load_run(run_dir)
    except (ValueError, OSError):
        return None
    try:
        return trace.meta.get(key)
    finally:
        getattr(trace, "close", lambda: None)()


def _status(run_dir: Path) -> Optional[str]:
    return _meta(run_dir, "status")


def existing_run(root: Path) -> Optional[Path]:
    """The trial's run directory worth keeping (finished, or with a checkpoint), after removing
    the others (attempts that died before their first checkpoint)."""
    keep = None
    for d in _run_dirs(root):
        if keep is None and ((d / "checkpoints" / "last.ckpt").is_file() or _status(d) == "success"):
            keep = d
        else:
            shutil.rmtree(d)
    return keep


PROFILER_CALLBACKS = ("profile", "profile-cycle")


def stop_worker_profiler() -> bool:
    """Stop the statistical profiler of the Dask worker this runs in, if it has one.

    A Dask worker samples every thread's stack every 10 ms (``distributed.worker.profile``)
    for its dashboard. Lightning's stacks are deep, and with the profiler on config A's trials
    took 1.2x as long in a worker as in a plain process (28.5 vs 23.5 s, 4,000 steps). The sweep's
    own ``LocalCluster`` starts its workers without it; this stops it in workers the user started.
    Returns True if the worker had it running.

    Example:
        >>> stop_worker_profiler()   # not inside a Dask worker: nothing to stop
        False
    """
    try:
        from distributed import get_worker
        worker = get_worker()
    except (ImportError, ValueError):
        return False
    running = [name for name in PROFILER_CALLBACKS if name in worker.periodic_callbacks]

    def stop() -> None:  # on the worker's event loop, which owns its periodic callbacks
        for name in running:
            callback = worker.periodic_callbacks.pop(name, None)
            if callback is not None:
                callback.stop()

    if running:
        worker.loop.add_callback(stop)
    return bool(running)


def _classify(run_dir: Path) -> str:
    """The class from the final analysis the run's own fit wrote (PhaseMonitor), else now."""
    final = _meta(run_dir, "phasewatch")
    if final and final.get("run_class") and (run_dir / "analysis" / "analysis.json").is_file():
        return final["run_class"]
    from phasewatch.analysis.analyzer import analyze_run, write_analysis
    result = analyze_run(run_dir)
    write_analysis(result, run_dir)
    return result.run_class


@contextlib.contextmanager
def _output_to(path: Path):
    """Send this process's stdout and stderr (file descriptors 1 and 2) to ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(path, "a") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def run_trial(sweep_dir: str, trial_id: str, fit_args: list[str], name: str,
              cores: int = 1) -> dict:
    """Train trial ``trial_id`` with ``phasewatch fit`` arguments ``fit_args`` in this process
    on ``cores`` cores; return its run dir, class, whether it trained, and seconds."""
    from .cli import main as fit_main
    from .threads import CORES_ENV

    start = time.time()
    root = Path(sweep_dir) / trial_id
    root.mkdir(parents=True, exist_ok=True)
    run_dir = existing_run(root)
    trained = run_dir is None or _status(run_dir) != "success"
    resumed = trained and run_dir is not None
    if trained:
        stop_worker_profiler()  # glibc's thresholds: fit sets them (trainer/allocator.py)
        (root / "attempt.json").write_text(json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": start,
             "resume": str(run_dir) if run_dir else None}))
        os.environ[CORES_ENV] = str(max(1, int(cores)))
        with _output_to(root / "fit.log"):
            status = fit_main([*fit_args, "--trainer.default_root_dir", str(root),
                      "--run.name", f"{name}-{trial_id}", "--run.wandb_group", name,
                      "--trainer.enable_progress_bar", "false",
                      *(["--run.resume", str(run_dir)] if run_dir else [])])
        if status:  # a usage error or full disk: fit printed one line into fit.log
            errors = [ln for ln in (root / "fit.log").read_text().splitlines() if "error:" in ln]
            raise RuntimeError(f"trial {trial_id}: {errors[-1] if errors else f'fit exited {status}'}")
        run_dir = existing_run(root)
        if run_dir is None or _status(run_dir) != "success":
            raise RuntimeError(f"trial {trial_id}: fit returned but {root} holds no finished run")
    return {"run_dir": str(run_dir), "run_class": _classify(run_dir), "trained": trained,
            "resumed": resumed, "seconds": time.time() - start}

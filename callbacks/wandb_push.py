"""Push a finished run's phase analysis to its W&B run(s), through Lightning's WandbLogger.

``push_to_wandb(trainer, result, run_dir)`` finds every ``WandbLogger`` in
``trainer.loggers`` (skipping one that already failed, ``logger.failed``) and writes:

- summary keys ``phasewatch/run_class``, ``phasewatch/censored``, ``phasewatch/t_mem``,
  ``phasewatch/t_gen`` (None when the event is absent) and ``phasewatch/phase/<boundary>``
  for each Nanda phase boundary found;
- the events table ``phasewatch/events`` (``logger.log_table``, columns name / step / low /
  high / signal) at ``trainer.global_step``;
- with ``figures``: the report PNGs (``run_figures``) as ``phasewatch/figures`` images;
- with ``artifact``: the run directory (a consistent SQLite backup of the store, arrays,
  snapshots, config, analysis; not checkpoints or W&B's own files) as an artifact of type
  ``phasewatch-run``.

Never ``wandb.log``: everything goes through ``logger.experiment`` / the logger's API. Any
failure warns once (per call) and returns False; training and the local trace are unaffected.

Example:
    >>> ok = push_to_wandb(trainer, result, "runs/latest")            # doctest: +SKIP
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

__all__ = ["push_to_wandb", "summary_values", "SKIP_DIRS"]

SKIP_DIRS = ("wandb", "checkpoints")


def summary_values(result) -> dict:
    """The ``phasewatch/*`` summary keys of an ``AnalysisResult``."""
    out = {"phasewatch/run_class": result.run_class, "phasewatch/censored": bool(result.censored)}
    for key, name in (("t_mem", "memorization"), ("t_gen", "generalization")):
        e = result.event(name)
        out[f"phasewatch/{key}"] = None if e is None else int(e.step)
    phases = result.phases if isinstance(result.phases, dict) else {}
    for b in phases.get("boundaries", []) or []:
        out[f"phasewatch/phase/{b['name']}"] = int(b["step"])
    return out


def _wandb_loggers(trainer) -> list:
    try:
        from pytorch_lightning.loggers import WandbLogger
    except ImportError:  # pragma: no cover
        return []
    return [lg for lg in getattr(trainer, "loggers", None) or []
            if isinstance(lg, WandbLogger) and not getattr(lg, "failed", False)]


def _add_run_dir(artifact, run_dir: Path, tmp: Path) -> None:
    """Add the run directory's files; the store as a consistent backup (WAL folded in)."""
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if (not path.is_file() or rel.parts[0] in SKIP_DIRS or rel.name.startswith("trace.sqlite")
                or rel.name.startswith(".")):  # .writer.lock / .writer.pid
            continue
        artifact.add_file(str(path), name=str(rel))
    if (run_dir / "trace.sqlite").is_file():
        from phasewatch.analysis.store_read import load_run
        with load_run(run_dir) as trace:  # no URI of our own: any path works ('#', '?', '%')
            copy = trace.backup(tmp / "trace.sqlite")
        artifact.add_file(str(copy), name="trace.sqlite")


def push_to_wandb(trainer, result, run_dir=None, *, figures: bool = True, artifact: bool = True,
                  config=None) -> bool:
    """Write the analysis to every live WandbLogger; True when all writes succeeded."""
    loggers = _wandb_loggers(trainer)
    if not loggers:
        return True
    step = int(getattr(trainer, "global_step", 0))
    values = summary_values(result)
    rows = [[e.name, e.step, e.low, e.high, e.signal] for e in result.events if e.step is not None]
    ok = True
    for lg in loggers:
        try:
            exp = lg.experiment
            for k, v in values.items():
                exp.summary[k] = v
            lg.log_table("phasewatch/events", columns=["name", "step", "low", "high", "signal"],
                         data=rows or [["none", None, None, None, ""]], step=step)
            with tempfile.TemporaryDirectory(prefix="phasewatch-wandb-") as tmp:
                if figures and run_dir is not None:
                    from phasewatch.analysis.report import run_figures
                    from phasewatch.analysis.store_read import load_run
                    with load_run(run_dir) as trace:
                        figs = run_figures(trace, result, os.path.join(str(run_dir), "analysis", "figures"))
                    if figs:
                        lg.log_image("phasewatch/figures", images=[p for _, p in figs],
                                     caption=[t for t, _ in figs], step=step)
                if artifact and run_dir is not None:
                    import wandb
                    name = "run-" + "".join(c if c.isalnum() or c in "-_." else "-"
                                            for c in os.path.basename(os.path.normpath(str(run_dir))))
                    art = wandb.Artifact(name, type="phasewatch-run",
                                         metadata={k: v for k, v in values.items()})
                    _add_run_dir(art, Path(run_dir), Path(tmp))
                    exp.log_artifact(art)
        except Exception as e:  # noqa: BLE001 - W&B must never stop training
            ok = False
            warnings.warn(f"phasewatch: could not push the analysis to W&B ({type(e).__name__}: "
                          f"{e}); the run directory {run_dir} has it (analysis/analysis.json)",
                          RuntimeWarning, stacklevel=2)
    return ok

"""The local learning coefficient of a finished run, from its saved weight snapshots.

Rebuilds the run's task and model from its ``config.yaml`` (as ``phasewatch fit`` wrote it),
loads each ``snapshots/step_*.{npz,safetensors}`` (``WeightSnapshot``) and estimates the LLC
there with :func:`phasewatch.callbacks.llc.estimate_llc`, on the run's own loss. Data: the
task's training set (n = its size); a fresh-batch task (``induction``) draws one fixed
dataset of ``n_fresh`` sequences.

``phasewatch probe RUN --llc`` (:func:`probe_llc`) runs it from the command line, prints a table
(or JSON) and writes ``llc/lambda_hat``, ``llc/std`` (spread over chains) at each snapshot step
and the meta ``llc/settings`` into the run's trace, the names ``LLCProbe`` logs live.

Example:
    >>> rows = llc_series("runs/modadd_mlp-20261201-...", chains=4, draws=200)  # doctest: +SKIP
    >>> [(r["step"], round(r["llc"], 1), round(r["std"], 1)) for r in rows][:2]  # doctest: +SKIP
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml

from phasewatch.analysis.store import TRACE_FILE, TraceWriter
from phasewatch.callbacks.llc import estimate_llc
from phasewatch.callbacks.snapshots import list_snapshots, load_snapshot

from .data import TaskDataModule
from .module import PhaseModule
from .probe_cli import ProbeUsageError

__all__ = ["load_run_module", "llc_series", "probe_llc", "format_llc", "main"]


def load_run_module(run_dir: str | Path) -> PhaseModule:
    """The run's PhaseModule (task and untrained model) rebuilt from ``run_dir/config.yaml``."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ValueError(f"{path} not found: pass a run directory written by `phasewatch fit`")
    cfg = yaml.safe_load(path.read_text())
    data_cfg = {k: v for k, v in (cfg.get("data") or {}).items() if v is not None or k == "batch_size"}
    model_cfg = {k: v for k, v in (cfg.get("model") or {}).items() if k != "task"}
    if "betas" in model_cfg:
        model_cfg["betas"] = tuple(model_cfg["betas"])
    dm = TaskDataModule(**data_cfg)
    return PhaseModule(dm.task, **model_cfg)


def llc_series(run_dir: str | Path, steps: Optional[Sequence[int]] = None, *,
               batch_size: int = 512, n_fresh: int = 2048, seed: int = 0,
               **estimator: Any) -> list[dict]:
    """``[{step, llc, std, chain_values, init_loss, nbeta, settings...}]`` at each snapshot (or those in ``steps``).

    ``estimator``: keyword arguments of ``estimate_llc`` (lr, localization, chains, draws ...).
    """
    all_steps, paths = list_snapshots(run_dir)
    if not paths:
        raise ValueError(f"no weight snapshots under {run_dir}: train with WeightSnapshot "
                         "(phasewatch.callbacks.WeightSnapshot) to estimate the LLC afterwards")
    module = load_run_module(run_dir)
    task = module.task
    if hasattr(task, "sample"):
        x, y = task.sample(n_fresh, torch.Generator().manual_seed(seed))
    else:
        x, y = task.train_x, task.train_y
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, len(x), batch_size)]

    def loss(m: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return module.loss_fn(m(batch[0]), batch[1])

    rows = []
    for step, p in zip(all_steps, paths):
        if steps is not None and step not in steps:
            continue
        state = {k: torch.from_numpy(v) for k, v in load_snapshot(p).items()}
        module.model.load_state_dict(state)
        est = estimate_llc(module.model, loss, batches, n=len(x), seed=seed, **estimator)
        rows.append({"step": step, "llc": est.llc, "std": est.std, "chain_values": list(est.chains),
                     "init_loss": est.init_loss, "nbeta": est.nbeta, **est.settings})
    return rows


def probe_llc(run: str, steps: Optional[str] = None, chains: int = 4, draws: int = 200,
              write: bool = True) -> list[dict]:
    """``phasewatch probe RUN --llc``: :func:`llc_series` at the snapshot steps (all, or the
    comma-separated ``steps``), written into the run's trace unless ``write`` is False.

    Raises ``ValueError`` with one line for a missing run, no snapshots, an unknown step or a
    bad chain / draw count (the CLI exits 2 with it).
    """
    run_dir = Path(run)
    if not (run_dir / TRACE_FILE).is_file():
        raise ValueError(f"{run}: no such run directory (no {TRACE_FILE}); give a directory "
                         "that phasewatch fit wrote")
    have, _ = list_snapshots(run_dir)
    if not have:
        raise ValueError(f"{run}: no weight snapshots; train with WeightSnapshot (as "
                         "configs/induction_heads.yaml does) to estimate the LLC afterwards")
    wanted = None
    if steps is not None:
        try:
            wanted = [int(t) for t in steps.split(",")]
        except ValueError:
            raise ValueError(f"--steps {steps!r}: give comma-separated snapshot steps, e.g. "
                             f"{','.join(map(str, have[:3]))}") from None
        missing = sorted(set(wanted) - set(have))
        if missing:
            raise ValueError(f"--steps: no snapshot at step(s) {missing}; the run has {have}")
    for key, val in (("chains", chains), ("draws", draws)):
        if val < 2:
            raise ValueError(f"--{key} {val}: give an integer >= 2")
    rows = llc_series(run_dir, wanted, chains=chains, draws=draws, burn_in=draws // 4)
    if write:
        with TraceWriter(run_dir) as store:
            for r in rows:
                store.log_scalars({"llc/lambda_hat": r["llc"], "llc/std": r["std"]}, r["step"])
            store.set_meta("llc/settings", {k: rows[0][k] for k in
                                            ("lr", "localization", "chains", "draws", "burn_in",
                                             "n", "nbeta")})
    return rows


def format_llc(rows: list[dict], written: bool) -> str:
    """A table: step, LLC (mean over chains), spread over chains, loss at the snapshot."""
    out = ["    step     lambda_hat    std(chains)   loss"]
    out += [f"{r['step']:>8d}  {r['llc']:12.4g}  {r['std']:12.4g}  {r['init_loss']:8.4g}" for r in rows]
    return "\n".join(out + ([] if written else ["(not written: --no-write)"]))


def main(args: Any) -> int:
    """CLI body of ``phasewatch probe RUN --llc`` (argparse namespace of ``analysis/cli.py``);
    bad input raises ``ProbeUsageError`` (one line, exit 2)."""
    if args.key_freqs is not None:
        raise ProbeUsageError("--key-freqs is for the restricted / excluded loss; drop it with --llc")
    try:
        rows = probe_llc(args.run, args.steps, args.chains, args.draws, write=not args.no_write)
    except (ValueError, FloatingPointError) as err:
        raise ProbeUsageError(str(err)) from None
    print(json.dumps(rows, indent=1) if args.json else format_llc(rows, not args.no_write))
    return 0

"""The local learning coefficient of a finished run, from its saved weight snapshots.

Rebuilds the run's task and model from its ``config.yaml`` (as ``phasewatch fit`` wrote it),
loads each ``snapshots/step_*.{npz,safetensors}`` (``WeightSnapshot``) and estimates the LLC
there with :func:`phasewatch.callbacks.llc.estimate_llc`, on the run's own loss. Data: the
task's training set (n = its size); a fresh-batch task (``induction``) draws one fixed
dataset of ``n_fresh`` sequences.

Example:
    >>> rows = llc_series("runs/modadd_mlp-20261201-...", chains=4, draws=200)  # doctest: +SKIP
    >>> [(r["step"], round(r["llc"], 1), round(r["std"], 1)) for r in rows][:2]  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import torch
import yaml

from phasewatch.callbacks.llc import estimate_llc
from phasewatch.callbacks.snapshots import list_snapshots, load_snapshot

from .data import TaskDataModule
from .module import PhaseModule

__all__ = ["load_run_module", "llc_series"]


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

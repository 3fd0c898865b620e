"""``phasewatch probe RUN``: recompute Nanda's restricted / excluded loss offline, one K for all steps.

Completes a stopped or crashed run (its main series are still "provisional") or tries another K:
rebuilds the run's built-in model and task from its ``hparams`` meta, loads the weight snapshot
of every probe step (``circuit/snapshot``), and writes ``circuit/restricted_loss`` /
``circuit/excluded_loss`` and the status meta ``circuit/progress_measures`` exactly as the end
of ``phasewatch fit`` does (``phasewatch.callbacks.progress``). K: ``--key-freqs``, else the key
frequencies of the model at the last snapshot.

Example:
    $ phasewatch probe runs/latest
    $ phasewatch probe runs/latest --key-freqs 14,35,41,42,52 --json
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from phasewatch.analysis.store import TRACE_FILE, TraceWriter
from phasewatch.analysis.store_read import load_run
from phasewatch.callbacks.circuit import write_final
from phasewatch.callbacks.fourier import FourierProbe, key_frequencies
from phasewatch.callbacks.progress import (LAYOUT_KEY, MAIN, SNAPSHOT, STATUS_KEY,
                                           check_key_freqs, final_result, not_applicable_reason,
                                           unpack_weights)

from .models import build_model
from .tasks import build_task

__all__ = ["ProbeUsageError", "parse_key_freqs", "probe_run", "format_result"]


class ProbeUsageError(ValueError):
    """A bad ``phasewatch probe`` input (exit status 2); the message is one line."""


def parse_key_freqs(text: str) -> list[str]:
    """``"14,35, 41"`` -> ``["14", "35", "41"]`` (checked against p later)."""
    parts = [t.strip() for t in text.split(",")]
    if not text.strip() or any(not t for t in parts):
        raise ProbeUsageError(f"--key-freqs {text!r}: give comma-separated integers, e.g. 14,35,41")
    return parts


def _as_int(token: str) -> Any:
    try:
        return int(token)
    except ValueError:
        return token  # check_key_freqs names it


def _rebuild(run_dir: Path, meta: dict[str, Any]) -> tuple[Any, torch.nn.Module, dict[str, Any]]:
    hp = meta.get("hparams") or {}
    if "model" not in hp or "task" not in hp:
        raise ProbeUsageError(f"{run_dir}: its meta has no hparams.model / hparams.task; offline "
                              "recompute needs a run of phasewatch's built-in models and tasks")
    task = build_task(hp["task"], p=hp.get("p", 97), frac=hp.get("frac", 0.5),
                      seed=hp.get("seed", 0), **(hp.get("task_kwargs") or {}))
    model = build_model(hp["model"], task, **(hp.get("model_kwargs") or {}))
    return task, model.eval(), hp


def probe_run(run: str, key_freqs: Sequence[str] | None = None, write: bool = True
              ) -> dict[str, Any]:
    """Recompute the main series of ``run`` (see the module docstring); returns the result.

    Raises ``ProbeUsageError`` for a missing path, a run without snapshots, a bad K, or a run
    the measures do not apply to.
    """
    run_dir = Path(run)
    if not (run_dir / TRACE_FILE).is_file():
        raise ProbeUsageError(f"{run}: no such run directory (no {TRACE_FILE}); give a directory "
                              "that phasewatch fit wrote")
    with load_run(run_dir) as trace:
        meta = trace.meta
        task, model, hp = _rebuild(run_dir, meta)
        reason = not_applicable_reason(hp.get("loss"), task.name)
        if reason is not None:
            raise ProbeUsageError(f"{run}: restricted / excluded loss do not apply: {reason}")
        if SNAPSHOT not in trace.array_names() or LAYOUT_KEY not in meta:
            raise ProbeUsageError(f"{run}: no weight snapshots ({SNAPSHOT}); rerun it with "
                                  "phasewatch fit (FourierProbe keeps them unless snapshots=False)")
        steps, snaps = trace.arrays(SNAPSHOT)
    settings = meta.get(STATUS_KEY) or {}
    probe = FourierProbe(threshold=settings.get("threshold", 0.85),
                         restricted_on=settings.get("restricted_on", "all"))
    probe.setup_grid(task, hp.get("loss"))
    p = probe.modulus
    if key_freqs is not None:
        try:
            probe.key_freqs = check_key_freqs([_as_int(k) for k in key_freqs], p)
        except ValueError as err:
            raise ProbeUsageError(f"--key-freqs: {err}") from None
    layout = meta[LAYOUT_KEY]
    with torch.no_grad():
        model.load_state_dict(unpack_weights(snaps[-1], layout), strict=False)
        _, acts = probe.grid_outputs(model)
    freq = key_frequencies(acts, p, probe.threshold)[0]
    final_k = sorted(set(freq[freq > 0].tolist()))
    res = final_result(probe, model, steps, snaps, layout, final_k)
    if write:
        with TraceWriter(run_dir) as store:
            write_final(store, res)
    out = dict(res.meta[STATUS_KEY], run=str(run_dir), last_step=int(steps[-1]), written=write)
    for name, (st, values) in res.series.items():
        out[name] = {"steps": st, "values": [float(v) for v in values]}
    return out


def format_result(out: dict[str, Any]) -> str:
    """A short table: K, then restricted / excluded loss per step."""
    head = [f"run {out['run']}: {out['status']}",
            f"K = {out.get('key_freqs')} ({out.get('k_source', '-')}); final model's K = "
            f"{out.get('final_model_key_freqs')} at step {out['last_step']}"]
    if out["status"] != "final":
        return "\n".join(head + [f"note: {out['reason']}"])
    r, e = out[MAIN[0]], out[MAIN[1]]
    rows = [f"{s:>8d}  {a:12.6g}  {b:12.6g}" for s, a, b in zip(r["steps"], r["values"], e["values"])]
    tail = [] if out["written"] else ["(not written: --no-write)"]
    return "\n".join(head + ["    step  restricted    excluded"] + rows + tail)


def main(run: str, key_freqs: str | None, as_json: bool, write: bool) -> int:
    """CLI body; ``ProbeUsageError`` propagates to the caller (exit 2)."""
    ks = parse_key_freqs(key_freqs) if key_freqs is not None else None
    out = probe_run(run, ks, write=write)
    print(json.dumps(out, indent=1, default=lambda o: o.tolist() if isinstance(o, np.ndarray)
                     else str(o)) if as_json else format_result(out))
    return 0

"""``phasewatch predict RUN... --horizon N [--json]``: will the run generalize, and when?

Reads only the first ``N`` steps of each run directory and applies the early rule
(:mod:`phasewatch.analysis.predict`). Text: one block per run (verdict, why, rule, features);
``--json``: one JSON object per run and line (JSON Lines). Bad input (no such run, a
horizon the trace does not reach, no training series) is one line on stderr and exit 2.

Example:
    $ phasewatch predict runs/latest --horizon 400
    $ phasewatch predict runs/a runs/b --horizon 400 --json
"""
from __future__ import annotations

import json
import sys

from .predict import MIN_HORIZON, TUNED, EarlyRule, predict_early, rule_for

__all__ = ["add_parser", "run"]

CORE = ("train/acc", "val/acc", "train/loss")


class UsageError(ValueError):
    """Bad input the user can fix; the CLI prints it as one line and exits 2."""


def add_parser(sub) -> None:
    """Register the ``predict`` subcommand on an argparse subparsers object."""
    p = sub.add_parser("predict", help="predict from the first N steps whether and when a run "
                                       "generalizes (val acc >= 0.99)")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--horizon", type=int, required=True, metavar="N",
                   help=f"steps the predictor may see (>= {MIN_HORIZON}; the shipped rules were tuned "
                        f"at {', '.join(str(r.tuned_horizon) for r in TUNED)})")
    p.add_argument("--json", action="store_true", help="one JSON object per run (JSON Lines)")


def predict_run(path: str, horizon: int, rule: EarlyRule | None = None) -> dict:
    """The prediction for run directory ``path`` as a JSON-ready dict; UsageError on bad input.
    ``rule`` defaults to the shipped rule tuned nearest to ``horizon``."""
    from .store import TraceStoreError
    from .store_read import load_run
    if horizon < MIN_HORIZON:
        raise UsageError(f"--horizon {horizon}: must be >= {MIN_HORIZON} steps")
    try:
        trace = load_run(path)
    except TraceStoreError as e:
        raise UsageError(str(e)) from None
    with trace:
        names = trace.names()
        if not any(n in names for n in CORE):
            raise UsageError(f"{path}: none of {', '.join(CORE)} in the trace; the predictor needs "
                             "a training run's accuracy and loss")
        last = max(int(trace.series(n)[0].max()) for n in CORE if n in names and trace.series(n)[0].size)
        if last < horizon:
            raise UsageError(f"{path}: the trace reaches step {last} only; use --horizon <= {last} "
                             "or wait for the run")
        rule = rule_for(horizon) if rule is None else rule
        p = predict_early(trace, horizon, rule)
    note = None if horizon == rule.tuned_horizon else (
        f"the rule was tuned at horizon {rule.tuned_horizon}; its thresholds are untested at {horizon}")
    return {"run": str(path), "horizon": horizon, "generalizes": p.generalizes, "t_gen": p.t_gen,
            "reason": p.reason, "note": note, "rule": rule.to_dict(), "features": p.features}


def _text(d: dict) -> str:
    verdict = {True: f"generalizes, near step {d['t_gen']:,}" if d["t_gen"] else "generalizes",
               False: "does not generalize", None: "cannot tell"}[d["generalizes"]]
    feats = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in d["features"].items() if v is not None and k != "horizon")
    lines = [f"{d['run']}: {verdict} (from the first {d['horizon']} steps)",
             f"  why: {d['reason']}", f"  rule: {d['rule']['text']}", f"  features: {feats}"]
    return "\n".join(lines + ([f"  note: {d['note']}"] if d["note"] else []))


def run(args) -> int:
    """Handler of ``phasewatch predict``; returns the exit status."""
    try:
        results = [predict_run(r, args.horizon) for r in args.runs]
    except UsageError as e:
        print(f"phasewatch predict: error: {e}", file=sys.stderr)
        return 2
    for d in results:
        print(json.dumps(d) if args.json else _text(d))
    return 0

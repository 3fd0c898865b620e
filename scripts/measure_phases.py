"""Print the Nanda phases of finished runs: segments, names or failed checks, boundaries with intervals, K.

Usage (train first, one torch thread, then measure):

    OMP_NUM_THREADS=1 WANDB_MODE=disabled phasewatch fit --config configs/modadd_mlp.yaml \\
        --trainer.default_root_dir runs/phases
    python scripts/measure_phases.py runs/phases/latest [more runs ...] [--json out.json]
    python scripts/measure_phases.py --oracle 20     # interval coverage on the synthetic oracle

For the Nanda p=113 configuration (configs/nanda_p113.yaml, ~12+ min on a CPU) the paper's
boundaries are 1.4k / 9.4k / 14k epochs (full batch: steps) with K = {14, 35, 41, 42, 52}.
"""
from __future__ import annotations

import argparse
import json
import sys

from phasewatch.analysis import analyze_run
from phasewatch.analysis.store import load_run


def describe(run: str) -> dict:
    """The phase result of ``run`` plus its K and val-accuracy midpoint."""
    with load_run(run) as t:
        status = dict(t.meta).get("circuit/progress_measures") or {}
    res = analyze_run(run)
    return {"run": run, "run_class": res.run_class, "key_freqs": status.get("key_freqs"),
            "measures": status.get("status"), "phases": res.phases}


def show(d: dict) -> str:
    ph = d["phases"]
    lines = [f"{d['run']}: class {d['run_class']}, measures {d['measures']}, K {d['key_freqs']}"]
    if ph.get("insufficient"):
        return "\n".join(lines + [f"  {ph['insufficient']}"])
    lines.append(f"  {ph['n_probes']} probes, k {ph['k']} segments, phi {ph['noise_phi']}, "
                 f"val-acc midpoint {ph['val_midpoint']}")
    for p in ph["phases"]:
        what = p["name"] or f"unnamed (expected {p['expected']}: {'; '.join(p['failed']) or '-'})"
        lines.append(f"  {p['start']:>7}-{p['end']:<7} {what}")
    for b in ph["boundaries"]:
        lines.append(f"  boundary {b['step']:>7} [{b['low']}, {b['high']}]  {b['name'] or '(unnamed)'}"
                     f"  jackknife {b['jackknife']}  bootstrap {b['bootstrap']}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--oracle", type=int, default=0, help="also score this many oracle seeds")
    args = ap.parse_args(argv)
    if args.oracle:
        from phasewatch.analysis.synthetic_examples import score_phase_oracle
        print("oracle:", score_phase_oracle(range(args.oracle)))
    out = [describe(r) for r in args.runs]
    for d in out:
        print(show(d))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())

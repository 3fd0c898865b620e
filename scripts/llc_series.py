"""LLC series of a finished run from its weight snapshots, drawn with the run's events.

    .venv/bin/python scripts/llc_series.py RUN_DIR --out docs/llc_x.png [--max-snapshots 12]
        [--lr 1e-4 --localization 100 --chains 4 --draws 200 --burn-in 50 --batch-size 512]

Writes ``<out>.csv`` (step, llc, std over chains, init loss, seconds) and the PNG: lambda_hat
+- std over chains against the step, with the analyzer's events (generalization, memorization,
induction formation) as vertical lines and a reference series (val/acc, or the repeated-segment
loss) on a second axis. Logic lives in phasewatch.trainer.llc_snapshots.
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np
import torch

from phasewatch.analysis.analyzer import analyze_run
from phasewatch.analysis.store_read import load_run
from phasewatch.callbacks.snapshots import list_snapshots
from phasewatch.trainer.llc_snapshots import llc_series

MARK = ("memorization", "generalization", "induction_formation_onset",
        "induction_formation_midpoint", "induction_formation_end", "induction_bump")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--out", required=True, help="PNG path (the CSV goes beside it)")
    ap.add_argument("--max-snapshots", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--localization", type=float, default=100.0)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--burn-in", type=int, default=50)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--n-fresh", type=int, default=2048)
    ap.add_argument("--replot", action="store_true", help="redraw from <out>.csv, no estimation")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    csv_path = args.out.rsplit(".", 1)[0] + ".csv"
    if args.replot:
        with open(csv_path) as f:
            rows = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(f)]
        return plot(rows, args)
    steps, _ = list_snapshots(args.run)
    keep = steps if len(steps) <= args.max_snapshots else \
        [steps[int(i)] for i in np.linspace(0, len(steps) - 1, args.max_snapshots).round()]
    rows = []
    for step in keep:
        t0 = time.process_time()
        row = llc_series(args.run, [step], batch_size=args.batch_size, n_fresh=args.n_fresh,
                         lr=args.lr, localization=args.localization, chains=args.chains,
                         draws=args.draws, burn_in=args.burn_in)[0]
        row["cpu_s"] = time.process_time() - t0
        rows.append(row)
        print(f"step {step}: llc {row['llc']:.2f} +- {row['std']:.2f} ({row['cpu_s']:.1f} s CPU)",
              flush=True)
    with open(csv_path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "llc", "std", "init_loss", "cpu_s"])
        w.writerows([[r["step"], r["llc"], r["std"], r["init_loss"], r["cpu_s"]] for r in rows])
    plot(rows, args)


def plot(rows: list[dict], args) -> None:
    """LLC +- sd against the step, a reference series and the run's events."""
    res = analyze_run(args.run)
    trace = load_run(args.run)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.6))
    s = np.array([r["step"] for r in rows])
    ax.errorbar(s, [r["llc"] for r in rows], yerr=[r["std"] for r in rows], marker="o", lw=1.2,
                capsize=3, color="black", label="LLC (+- sd over chains)")
    ax.set_xlabel("step")
    ax.set_ylabel("local learning coefficient")
    ref = next((n for n in ("circuit/repeat_loss", "val/acc") if n in trace.names()), None)
    if ref:
        rx = ax.twinx()
        rs, rv = trace.series(ref)
        rx.plot(rs, rv, color="tab:blue", lw=1, alpha=0.7, label=ref)
        rx.set_ylabel(ref, color="tab:blue")
    for e in res.events:
        if e.name in MARK and e.step is not None:
            ax.axvline(e.step, ls="--", lw=1, color="tab:green" if "generaliz" in e.name
                       or "midpoint" in e.name else "tab:orange", label=f"{e.name} {e.step}")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(f"LLC over training (lr {args.lr:g}, gamma {args.localization:g}, "
                 f"{args.chains} chains x {args.draws} draws)")
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

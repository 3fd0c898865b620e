"""Benchmark the trace store: scalar series, and per-example arrays at the issue's scale.

Scalars: write N series x M points, then time ``series()`` reads.
Arrays: ``--examples`` (p^2 = 12,769) float16 values x ``--evals`` (1,000) evaluations, written
with ``log_array`` and read back with ``arrays()``, side by side with the layout the store used
before (one ``.npz`` file per payload, written atomically: temp file + rename); prints the
ratios.

Import: ``phasewatch import`` of a ``--import-rows`` (10^6) row Lightning ``metrics.csv``
(step, epoch, train loss / acc every row, val loss / acc every 10th row), run as its own
process: wall time and peak RSS of the whole command, and the time inside ``import_csv``.

Usage: .venv/bin/python scripts/bench_store.py [--series 10] [--points 1000000] [--repeats 5]
       [--examples 12769] [--evals 1000] [--import-rows 1000000] [--import-only]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from phasewatch.analysis import TraceWriter, load_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--flush-every-rows", type=int, default=10_000)
    ap.add_argument("--examples", type=int, default=12_769)
    ap.add_argument("--evals", type=int, default=1_000)
    ap.add_argument("--import-rows", type=int, default=1_000_000)
    ap.add_argument("--import-only", action="store_true")
    args = ap.parse_args(argv)
    _bench_import(args.import_rows)
    if args.import_only:
        return
    _bench_arrays(args.examples, args.evals)
    names = [f"bench/s{i}" for i in range(args.series)]
    rng = np.random.default_rng(0)
    values = rng.standard_normal(args.points)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        w = TraceWriter(run_dir, flush_every_rows=args.flush_every_rows, flush_every_s=60)
        for step in range(args.points):  # the logger's pattern: all series at each step
            v = float(values[step])
            w.log_scalars({n: v for n in names}, step=step)
        w.flush()
        dt = time.perf_counter() - t0
        n_rows = args.series * args.points
        print(f"write: {n_rows} rows in {dt:.2f} s = {n_rows / dt:,.0f} rows/s "
              f"({args.points / dt:,.0f} log_scalars calls/s of {args.series} names)")
        _time_reads("live run (one chunk per flush)", run_dir, names, values, args.repeats)
        t0 = time.perf_counter()
        w.close()
        print(f"close (compaction): {time.perf_counter() - t0:.2f} s")
        _time_reads("closed run (compacted)", run_dir, names, values, args.repeats)


def _time_reads(label, run_dir, names, values, repeats) -> None:
    with load_run(run_dir) as run:
        times = []
        for r in range(repeats):
            t0 = time.perf_counter()
            steps, vals = run.series(names[r % len(names)])
            times.append(time.perf_counter() - t0)
        assert len(steps) == len(values) and np.array_equal(vals, values)
    print(f"read, {label}: series() of {len(values)} points: median "
          f"{statistics.median(times) * 1e3:.0f} ms (min {min(times) * 1e3:.0f}, "
          f"max {max(times) * 1e3:.0f}, {repeats} repeats)")

def _write_npz(run_dir: Path, name: str, step: int, arr: np.ndarray) -> None:
    """The previous layout: ``arrays/<name>/<step>.npz``, temp file + atomic rename."""
    d = run_dir / "npz" / name
    d.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=d)
    with os.fdopen(fd, "wb") as f:
        np.savez(f, array=arr)
    os.replace(tmp, d / f"{step}.npz")


def _read_npz(run_dir: Path, name: str, steps) -> np.ndarray:
    out = []
    for step in steps:
        with np.load(run_dir / "npz" / name / f"{step}.npz") as z:
            out.append(z["array"])
    return np.stack(out)


def _bench_arrays(n_examples: int, n_evals: int) -> None:
    arr = np.random.default_rng(0).random(n_examples).astype(np.float16)
    steps = range(0, 10 * n_evals, 10)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        with TraceWriter(run_dir, flush_every_s=60) as w:
            for step in steps:
                w.log_array("examples/train/loss", step, arr)
        t_log = time.perf_counter() - t0
        t0 = time.perf_counter()
        for step in steps:
            _write_npz(Path(run_dir), "loss", step, arr)
        t_npz = time.perf_counter() - t0
        t0 = time.perf_counter()
        with load_run(run_dir) as run:
            _, stacked = run.arrays("examples/train/loss")
        r_log = time.perf_counter() - t0
        t0 = time.perf_counter()
        old = _read_npz(Path(run_dir), "loss", steps)
        r_npz = time.perf_counter() - t0
        assert stacked.shape == old.shape == (n_evals, n_examples) and np.array_equal(stacked, old)
    print(f"arrays, {n_evals} evaluations x {n_examples} float16: write "
          f"{t_log / n_evals * 1e6:.0f} us per log_array (an .npz per payload: "
          f"{t_npz / n_evals * 1e6:.0f} us, ratio {t_npz / t_log:.1f}x); read all "
          f"{r_log * 1e3:.0f} ms ({r_npz * 1e3:.0f} ms, ratio {r_npz / r_log:.1f}x)")


_IMPORT = """
import sys, time
t0 = time.perf_counter()
from phasewatch.analysis.cli import main
t1 = time.perf_counter()
assert main(["import", sys.argv[1], "--out", sys.argv[2]]) == 0
print(f"{time.perf_counter() - t1:.3f}")
"""


def _bench_import(n_rows: int) -> None:
    import resource
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "metrics.csv"
        loss, acc = rng.random(n_rows), rng.random(n_rows)
        with open(csv, "w") as f:
            f.write("step,epoch,train_loss,train_acc,val_loss,val_acc\n")
            for i in range(n_rows):
                val = f"{loss[i] / 2:.6g},{acc[i] / 2:.6g}" if i % 10 == 0 else ","
                f.write(f"{i},{i // 1000},{loss[i]:.6g},{acc[i]:.6g},{val}\n")
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", _IMPORT, str(csv), str(Path(d) / "run")],
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak, cpu = usage.ru_maxrss, usage.ru_utime + usage.ru_stime  # maxrss: KiB on Linux
        with load_run(Path(d) / "run") as run:
            steps, values = run.series("train_loss")
            assert len(steps) == n_rows and len(run.series("val_acc")[0]) == (n_rows + 9) // 10
            np.testing.assert_allclose(values, loss, rtol=1e-5)
    print(f"import of a {n_rows}-row metrics.csv: {wall:.2f} s for the whole `phasewatch import` "
          f"process ({cpu:.2f} s CPU; {float(done.stdout.split()[-1]):.2f} s in import_csv), peak RSS "
          f"{peak / 1024:.0f} MB")


if __name__ == "__main__":
    main()

"""Benchmark the trace store: write N series x M points, then time ``series()`` reads.

Usage: .venv/bin/python scripts/bench_store.py [--series 10] [--points 1000000] [--repeats 5]
Prints write throughput (rows/s) and the median read time of one series.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from phasewatch.analysis import TraceWriter, load_run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--points", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--flush-every-rows", type=int, default=10_000)
    args = ap.parse_args(argv)
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

if __name__ == "__main__":
    main()

"""Benchmark: analyze a 10^6-step run with 10 series (target <= 2 s).

Writes a synthetic grokking run (every step logged) through the real TraceWriter, then
times ``analyze_run`` (SQLite read + full analysis) and the in-memory analysis alone.

    .venv/bin/python scripts/bench_analysis.py [--steps 1000000] [--dir /tmp/pw_bench]
"""
import argparse
import os
import shutil
import time

import numpy as np

from phasewatch.analysis import TraceWriter, load_run
from phasewatch.analysis.analyzer import analyze_run, analyze_trace
from phasewatch.analysis.synthetic import logistic


def make(run_dir, n_steps, seed=0):
    rng = np.random.default_rng(seed)
    s = np.arange(n_steps, dtype=np.int64)
    tr = np.clip(logistic(s, 0.02, 1.0, 2.5, 0.05) + rng.normal(0, 0.003, s.size), 0, 1)
    va = np.clip(logistic(s, 0.02, 1.0, 4.3, 0.04) + rng.normal(0, 0.003, s.size), 0, 1)
    k = [0, 1e3, 1e4, 2e4, n_steps]
    series = {
        "train/acc": tr, "val/acc": va,
        "train/loss": np.exp(-8 * tr) * 4 * np.exp(rng.normal(0, 0.05, s.size)),
        "val/loss": np.exp(-8 * va) * 4 * np.exp(rng.normal(0, 0.05, s.size)),
        "weights/sum_sq": 10 ** np.interp(s, k, [2.5, 2.7, 2.3, 1.8, 1.8]),
        "weights/l2": 10 ** (np.interp(s, k, [2.5, 2.7, 2.3, 1.8, 1.8]) / 2),
        "circuit/excluded_loss": 10 ** np.interp(s, k, [0.6, -1, 0, 1, 1]),
        "circuit/restricted_loss": 10 ** np.interp(s, k, [0.8, 0.7, 0.2, -2, -2]),
        "circuit/gini": np.interp(s, k, [0.2, 0.2, 0.35, 0.8, 0.8]),
        "lr": np.full(s.size, 1e-3),
    }
    shutil.rmtree(run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    w = TraceWriter(run_dir, flush_every_rows=200_000)
    names = list(series)
    cols = [series[n].tolist() for n in names]
    for i in range(n_steps):
        w.log_scalars({n: c[i] for n, c in zip(names, cols)}, i)
    w.close()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--dir", default="/tmp/pw_bench_run")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    if not os.path.exists(os.path.join(a.dir, "trace.sqlite")) or \
            int(load_run(a.dir).series("val/acc")[0][-1]) != a.steps - 1:
        print(f"writing {a.steps} steps x 10 series ... {make(a.dir, a.steps):.1f} s")
    times, cpu, mem = [], [], []
    for _ in range(a.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        res = analyze_run(a.dir)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    run = load_run(a.dir)
    t0 = time.perf_counter()
    n = sum(run.series(x)[0].size for x in run.names())
    t_read = time.perf_counter() - t0
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        analyze_trace(run)
        mem.append(time.perf_counter() - t0)
    print(f"run: {a.steps} steps, {len(run.names())} series, {n} points")
    print(f"class {res.run_class}; generalization at {res.event('generalization').step}; "
          f"phase boundaries {[b['step'] for b in res.phases.get('boundaries', [])]} (true 1000, 10000, 20000)")
    print(f"analyze_run (read + analyze): best {min(times):.2f} s, median {np.median(times):.2f} s "
          f"(target <= 2 s); CPU time best {min(cpu):.2f} s; read all series {t_read:.2f} s; "
          f"analysis after read {min(mem):.2f} s; load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

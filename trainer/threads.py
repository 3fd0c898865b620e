"""How many torch threads a run uses: from the work in one step and the cores free for it.

A thread that shares its core with another busy process stalls every step at the next
barrier (measured on 2 cores beside one busy process: config A 6x and config C 4x slower with
two threads than with one), while on free cores even config A's small step (20 k parameters x
1,740 examples) gains from a second thread (2,000 steps: 29.8 s vs 35.5 s). So the rule is:
one thread per ``WORK_PER_THREAD`` multiply-adds of a step (``n_params x examples per step``),
at least one, at most the cores that no other process is using right now.

Precedence: ``--run.threads N`` > environment ``PHASEWATCH_THREADS`` > this rule. A sweep
worker sets ``PHASEWATCH_CORES`` to its share of its host's cores; the rule then uses that
share and counts no other process as busy (the other workers hold the other cores). Several
training processes of one run on a host (DDP on CPU) split its cores between them.

Example:
    >>> choose_threads(n_params=19_707, examples=1_740, cores=2, busy=0.0)   # config A, idle
    2
    >>> choose_threads(n_params=19_707, examples=1_740, cores=2, busy=1.0)   # one competitor
    1
    >>> choose_threads(n_params=19_707, examples=100, cores=2, busy=0.0)     # a tiny step
    1
    >>> choose_threads(n_params=212_864, examples=1_740, cores=2, busy=0.0)  # config C, idle
    2
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Optional

__all__ = ["ENV", "CORES_ENV", "WORK_PER_THREAD", "available_cores", "busy_cores", "choose_threads",
           "resolve_threads"]

ENV = "PHASEWATCH_THREADS"
CORES_ENV = "PHASEWATCH_CORES"
WORK_PER_THREAD = 1e7


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, else ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def busy_cores(samples: int = 5, interval_s: float = 0.01) -> float:
    """Other runnable processes right now: the median of ``/proc/loadavg``'s running count
    minus this process; the 1-minute load average where that file does not exist."""
    counts = []
    for _ in range(samples):
        try:
            with open("/proc/loadavg") as f:
                counts.append(int(f.read().split()[3].split("/")[0]) - 1)
        except (OSError, ValueError, IndexError):
            return os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        time.sleep(interval_s)
    return float(max(0.0, statistics.median(counts)))


def choose_threads(n_params: int, examples: int, cores: int, busy: float) -> int:
    """Threads for a step of ``n_params x examples`` multiply-adds on ``cores`` cores of which
    ``busy`` are taken by other processes."""
    free = max(1, int(cores - busy + 0.5))
    wanted = max(1, int(n_params * examples // WORK_PER_THREAD))
    return max(1, min(wanted, free, cores))


def _env_int(name: str) -> Optional[int]:
    value = os.environ.get(name)
    if not value:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def resolve_threads(requested: Optional[int], n_params: int, examples: int,
                    processes: int = 1) -> tuple[int, str]:
    """The thread count and why: ``requested`` if given, else ``$PHASEWATCH_THREADS``, else
    ``choose_threads`` on this machine's cores (``$PHASEWATCH_CORES`` if set) split between
    the run's ``processes`` on this host."""
    if requested is not None:
        if int(requested) < 1:
            raise ValueError(f"run.threads must be >= 1 or null (auto), got {requested}")
        return int(requested), "run.threads"
    n = _env_int(ENV)
    if n is not None:
        return n, ENV
    cores = _env_int(CORES_ENV)
    share = cores is not None
    cores = max(1, (cores if share else available_cores()) // max(1, processes))
    busy = 0.0 if share else busy_cores()
    n = choose_threads(n_params, examples, cores, busy)
    return n, (f"auto: {n_params:,} params x {examples:,} examples per step, {cores} cores"
               + ("" if share else f", {busy:g} busy"))

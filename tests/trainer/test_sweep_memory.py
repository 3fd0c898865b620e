"""Sweep workers train like `phasewatch fit` does: no Dask malloc-trim setting and no stack
profiler left in force."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("distributed")

import dask  # noqa: E402
from phasewatch.trainer.sweep import _client  # noqa: E402
from phasewatch.trainer.allocator import TRIM_ENV  # noqa: E402
from phasewatch.trainer.sweep_trial import stop_worker_profiler  # noqa: E402

# Page faults while allocating, filling and freeing forty 4 MiB tensors, before and after
# keep_freed_memory(): a fresh mmap per tensor faults all its ~1,000 pages each time; memory
# kept by the allocator faults only on the first round.
FAULTS = """
import resource, torch
from phasewatch.trainer.allocator import keep_freed_memory

def faults():
    torch.ones(1 << 20)  # warm-up: the allocator's own first growth is not what is measured
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(40):
        torch.ones(1 << 20).add_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

first = faults()
acted = keep_freed_memory()
print(first, acted, faults())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_a_worker_started_with_dasks_trim_threshold_stops_refaulting_each_tensor() -> None:
    out = subprocess.run([sys.executable, "-c", FAULTS], env={**os.environ, TRIM_ENV: "65536"},
                         capture_output=True, text=True, check=True).stdout.split()
    before, acted, after = int(out[0]), out[1] == "True", int(out[2])
    assert acted
    assert before >= 40 * 1000  # 40 tensors x 1,024 pages each, every round faulted in afresh
    assert after < before / 10


def _profile_samples(dask_worker) -> tuple:
    return "profile" in dask_worker.periodic_callbacks, dask_worker.profile_recent["count"]


def test_the_sweeps_own_local_cluster_starts_its_workers_without_it() -> None:
    client = _client(None, 1)
    try:
        assert list(client.run(os.environ.get, TRIM_ENV).values()) == [None]
        (running, samples), = client.run(_profile_samples).values()
        assert not running and samples == 0
        assert dask.config.get("distributed.worker.profile.enabled")  # the caller's stays on
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()


def test_a_trial_stops_the_stack_profiler_of_a_worker_the_user_started() -> None:
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                           dashboard_address=":0")  # Dask's defaults: profiler on
    client = Client(cluster)
    try:
        (running, _), = client.run(_profile_samples).values()
        assert running
        assert client.submit(stop_worker_profiler, pure=False).result()
        time.sleep(0.2)  # the stop runs on the worker's event loop
        (running, before), = client.run(_profile_samples).values()
        time.sleep(0.3)  # 30 samples at the default 10 ms, were it still on
        (_, after), = client.run(_profile_samples).values()
        assert not running and after == before
        assert not client.submit(stop_worker_profiler, pure=False).result()  # once is enough
    finally:
        client.close()
        cluster.close()

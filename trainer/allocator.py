"""glibc's malloc settings for training: memory a step frees stays in the process.

glibc returns freed memory to the OS when more than ``M_TRIM_THRESHOLD`` is free at the top of
the heap, and serves a request above ``M_MMAP_THRESHOLD`` with a fresh ``mmap``. Both start at
128 KiB and rise (to 32 / 64 MiB at most) only as large blocks are freed. A training step's
freed activations can then go back to the OS at the end of each step and be faulted in again,
zeroed, in the next: ``phasewatch fit`` of config C (1-layer transformer, full batch) took ~2,300
page faults a step with glibc's defaults, ~20 with the thresholds set here (``tests/trainer/
test_allocator.py``), and ran 2-10 % faster (four 600-step runs beside one with these settings).
Dask's nannies make it worse: they start workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which
stops the rise (config A trained 1.7-2x slower in such a worker).

``keep_freed_memory()`` sets the two thresholds to the values glibc's own adjustment settles at
(mmap 32 MiB, trim 64 MiB): at most 64 MiB of freed memory stays mapped. ``phasewatch fit``
calls it; with your own Trainer, call it before ``fit`` (or start Python with
``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=67108864``). Elsewhere than glibc it
does nothing.

Example:
    >>> keep_freed_memory()   # on Linux with glibc; False elsewhere
    True
"""
from __future__ import annotations

import ctypes
import sys

__all__ = ["TRIM_ENV", "keep_freed_memory"]

TRIM_ENV = "MALLOC_TRIM_THRESHOLD_"  # glibc reads it at start-up; Dask's nannies set it
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def keep_freed_memory() -> bool:
    """Set glibc's mmap threshold to 32 MiB and its trim threshold to 64 MiB; True if it did."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no libc.so.6 / mallopt)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 64 << 20))

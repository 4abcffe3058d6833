"""Timing and memory helpers shared by the benchmark scripts.

Absolute times vary with the load of a shared machine; every script measures the things it
compares side by side in one run and reports ratios.
"""

from __future__ import annotations

import os

# One BLAS/OpenMP thread per process: on a small shared machine, spinning thread pools distort
# small-matrix timings by 10x (measured); set before numpy and torch are imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import time
import tracemalloc
from collections.abc import Callable

import numpy as np


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """The shortest of ``repeats`` wall times of ``fn()`` (s): the least disturbed by other load."""
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return float(best)


def rate(step: Callable[[], int], min_calls: int, min_seconds: float) -> float:
    """Units per second of ``step()`` (which returns the units it did), called at least
    ``min_calls`` times and for at least ``min_seconds``."""
    calls = units = 0
    start = time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < min_seconds:
        units += step()
        calls += 1
    return units / (time.perf_counter() - start)


def traced_peak_mib(fn: Callable[[], object]) -> float:
    """Peak of the Python and numpy allocations made while ``fn()`` runs (MiB), by tracemalloc.

    numpy reports its array buffers to tracemalloc; torch's allocator does not (use
    :func:`maxrss_mib` of a child process for torch work). Tracing slows Python down, so never
    time a traced call.
    """
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        fn()
        return (tracemalloc.get_traced_memory()[1] - before) / 2**20
    finally:
        tracemalloc.stop()


def maxrss_mib(rusage) -> float:
    """Peak resident memory of a finished child process (``os.wait4``'s rusage; Linux kB) in MiB."""
    return rusage.ru_maxrss / 1024.0

"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from typing import Any


def pin_to_one_core() -> None:
    """Goals say "on one core": keep numpy and the interpreter on a single CPU."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Fastest wall time of `repeat` runs (the least disturbed by the rest of the machine)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return best, result


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

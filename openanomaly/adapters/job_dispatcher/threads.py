"""Jobs on a local thread pool: the light mode's dispatcher.

Threads, not processes: a thread shares the loaded models, the context cache and the writer's
connection pool for free, and fits spend their time in numba, numpy and torch, which release
the GIL. Scoring with statsforecast is a Python loop per series that holds it, so two infer
jobs on two threads gain ~1.2x, not 2x (benchmarks/README.md, cluster mode); for more, run
worker processes (cluster mode).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from threading import Lock

from openanomaly.domain.jobs import Job, JobResult

log = logging.getLogger(__name__)


class ThreadPoolDispatcher:
    """Runs each job with `run` (a JobRunner's) on one of `workers` threads."""

    def __init__(self, workers: int, run: Callable[[Job], JobResult]) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="oa-job")
        self._run = run
        self._running: dict[Future[JobResult], str] = {}
        self._lock = Lock()

    def submit(self, job: Job) -> Future[JobResult]:
        future = self._pool.submit(self._run, job)
        with self._lock:
            self._running[future] = job.name
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[JobResult]) -> None:
        with self._lock:
            self._running.pop(future, None)

    def shutdown(self, grace: float) -> None:
        """Queued jobs are cancelled; running ones get `grace` seconds, then are abandoned
        (a thread cannot be killed; the process exit ends them)."""
        with self._lock:
            pending = list(self._running)
        self._pool.shutdown(wait=False, cancel_futures=True)
        _, late = wait_futures(pending, timeout=grace)
        if late:
            with self._lock:
                names = sorted(self._running.get(f, "?") for f in late)
            log.warning("jobs still running after %.0fs grace: %s", grace, ", ".join(names))

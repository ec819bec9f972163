"""Recorded runs: hand a run's jobs to the dispatcher, await them, record the outcome and (for
infer) commit the watermark when every job succeeded. The daemon decides *what* runs *when*;
this decides how a run is carried out and recorded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from openanomaly.daemon.metrics import DaemonMetrics
from openanomaly.domain.jobs import Job
from openanomaly.errors import DispatchUnavailable, OpenAnomalyError
from openanomaly.ports import JobDispatcher, LeaderLease, ModelRegistry, RunRecord
from openanomaly.usecases.common import Clock
from openanomaly.usecases.jobs import combine
from openanomaly.usecases.train import error_text

log = logging.getLogger(__name__)


class RunExecutor:
    def __init__(
        self,
        dispatcher: JobDispatcher,
        registry: ModelRegistry,
        metrics: DaemonMetrics,
        clock: Clock,
        *,
        lease: LeaderLease | None,
        retrain: Callable[[str], Any],
    ) -> None:
        self.dispatcher = dispatcher
        self.registry = registry
        self.metrics = metrics
        self.clock = clock
        self.lease = lease
        self.retrain = retrain
        # Jobs still executing, by (pipeline, kind). A run past its timeout keeps its thread
        # (threads cannot be killed): no second run of that kind starts until it ends, or
        # two runs of one pipeline could race on its watermark and take every worker.
        self._running: dict[tuple[str, str], list[Any]] = {}
        self._recording: set[asyncio.Task[Any]] = set()  # runs in progress

    async def settle(self, timeout: float) -> None:
        """Let runs whose jobs just finished be recorded (on stop, after the grace period)."""
        if self._recording:
            await asyncio.wait(list(self._recording), timeout=timeout)

    async def run(
        self,
        name: str,
        kind: str,
        jobs: list[Job],
        scheduled: datetime,
        timeout: float,
        *,
        commit: datetime | None = None,
        fence: int | None = None,
    ) -> RunRecord | None:
        """One recorded run: hand `jobs` to the dispatcher, await them all, and (infer) move
        the watermark to `commit` when every job succeeded."""
        previous = self._running.get((name, kind), [])
        if not all(f.done() for f in previous):
            log.warning(
                "%s: %s run skipped: the previous one is still running past its timeout",
                name,
                kind,
            )
            self.metrics.runs.labels(name, kind, "skipped").inc()
            return None
        task = asyncio.current_task()
        if task is not None:
            self._recording.add(task)
            task.add_done_callback(self._recording.discard)
        registry = self.registry  # several calls below, each in a thread
        try:
            run = await asyncio.to_thread(
                registry.start_run, RunRecord(name, kind, scheduled, self.clock())
            )
        except OpenAnomalyError as exc:
            log.error("%s: %s run not started: %s", name, kind, exc)
            return None
        outcome = await self._execute(name, kind, jobs, timeout)
        if outcome is None:  # the daemon is stopping
            run = replace(run, status="interrupted", error="the daemon stopped before it ended")
            await asyncio.to_thread(registry.finish_run, run)
            return None
        counts, error, retrain, job_failed = outcome
        if error is None and commit is not None and jobs:
            moved = await asyncio.to_thread(registry.set_watermark, name, commit, fence=fence)
            if not moved:
                error = "not committed: another scheduler holds the lease now"
        status = "failed" if error else "ok"
        run = replace(run, status=status, finished=self.clock(), error=error, **counts)
        if error and (self.lease is not None or not job_failed):  # else the runner logged it
            log.error("%s: %s run failed: %s", name, kind, error)
        await asyncio.to_thread(registry.finish_run, run)
        self.metrics.record(run)
        if retrain:
            self.retrain(name)
        return run

    async def _execute(
        self, name: str, kind: str, jobs: list[Job], timeout: float
    ) -> tuple[Any, str | None, bool, bool] | None:
        """(counts, error, needs retrain, whether a job failed) of the jobs; None when
        cancelled by a stop."""
        try:
            # Off the event loop: a publish may wait on the broker (reconnects, retries), and
            # the loop must keep renewing the lease and answering HTTP meanwhile.
            futures = await asyncio.to_thread(lambda: [self.dispatcher.submit(j) for j in jobs])
        except DispatchUnavailable as exc:
            self.metrics.dispatch_errors.inc()
            self.metrics.dispatcher_up.set(0)
            return {}, str(exc), False, False
        self.metrics.dispatcher_up.set(1)
        self._running[(name, kind)] = futures
        waiting = asyncio.gather(*(asyncio.wrap_future(f) for f in futures))
        try:
            results = await asyncio.wait_for(waiting, timeout)
        except asyncio.CancelledError:  # shutting down: queued and abandoned runs end here
            log.info("%s: %s run not awaited any longer: the daemon is stopping", name, kind)
            return None
        except TimeoutError:
            if self.lease is not None:
                # Cluster mode: the jobs may still run (idempotently) but nothing waits for
                # them; unlike a stuck local thread they hold no slot of ours, so the next
                # cycle need not wait for them (a lost message never reports at all).
                self._running.pop((name, kind), None)
            return {}, f"timed out after {timeout:.0f}s", False, False
        except OpenAnomalyError as exc:  # the result could not be fetched (broker lost)
            self.metrics.dispatcher_up.set(0)
            return {}, error_text(exc), False, False
        except Exception as exc:  # a bug; the run is still recorded, with the error
            log.exception("%s: %s run crashed", name, kind)
            return {}, error_text(exc), False, False
        counts, error, retrain = combine(list(results))
        return counts, error, retrain, error is not None

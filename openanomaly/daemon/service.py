"""The daemon: every pipeline's train and infer jobs on APScheduler, run on the dispatcher.

The asyncio loop only schedules and awaits; the work (reads, fits, writes) runs on the
dispatcher (local threads, or Celery workers in cluster mode), so the HTTP endpoints answer
while a model trains. The daemon owns the run records and the watermarks: it plans each infer
cycle (one job, or one per shard), and commits the watermark only when every job succeeded.
Each run has a timeout: a hung run is recorded as failed and frees its slot (a thread cannot be
killed; the reader's own timeouts end it).

In cluster mode several daemons may run; only the holder of the scheduler lease runs jobs, the
others keep their schedules warm and take over when the lease expires.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import undefined

from openanomaly.daemon.backtests import Backtests
from openanomaly.daemon.metrics import DaemonMetrics
from openanomaly.daemon.runs import RunExecutor
from openanomaly.errors import OpenAnomalyError, Problem
from openanomaly.ports import JobDispatcher, LeaderLease, LoadedPipeline, RunRecord
from openanomaly.usecases.common import floor_to_step
from openanomaly.usecases.jobs import JobRunner, plan_infer, train_job

if TYPE_CHECKING:
    from openanomaly.bootstrap import App

log = logging.getLogger(__name__)


class _GridTrigger(IntervalTrigger):  # type: ignore[misc]  # APScheduler 3 is untyped
    """An IntervalTrigger that stays on its grid (`start_date` + n * interval) after a run
    started by hand: the plain one fires next at that run's time + interval, so one POST
    .../infer would shift every later infer off the step grid for good."""

    def get_next_fire_time(
        self, previous_fire_time: datetime | None, now: datetime
    ) -> datetime | None:
        # The first grid point strictly after the previous run (never that run again).
        after = (
            now if previous_fire_time is None else previous_fire_time + timedelta(microseconds=1)
        )
        fire: datetime | None = super().get_next_fire_time(None, after)
        return fire


@dataclass
class PipelineState:
    loaded: LoadedPipeline
    problems: list[Problem] = field(default_factory=list)  # the file's, when it broke


class Daemon:
    def __init__(
        self,
        app: App,
        dispatcher: JobDispatcher,
        metrics: DaemonMetrics,
        *,
        runner: JobRunner,
        lease: LeaderLease | None = None,
        shard_series: int | None = None,
    ) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.runner = runner  # this process's jobs (light mode) and staleness bookkeeping
        self.lease = lease  # None: the only scheduler (light mode)
        self.shard_series = shard_series
        self.leader = lease is None
        self._lease_until = 0.0  # monotonic: when our lease lapses unless renewed (cluster)
        self.pipelines: dict[str, PipelineState] = {}
        self.problems: list[Problem] = []
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._fingerprint = ""
        self.started = False
        self.last_tsdb_ok: datetime | None = None
        self.runs = RunExecutor(
            dispatcher,
            app.registry,
            metrics,
            app.clock,
            lease=lease,
            retrain=lambda name: self.trigger(name, "train"),
        )
        self.backtests = Backtests(app.reader, app.engine_for)  # the API's playground

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        jobs = self.app.settings.jobs
        self.metrics.leader.set(1 if self.leader else 0)
        if self.lease is None:
            self._interrupt_orphans()
        self.scheduler.start()
        self.reload()
        if self.lease is not None:
            await self._lease_tick()  # lead at once when nobody else does
            renew = self.app.settings.dispatcher.lease_ttl.total_seconds() / 3
            self.scheduler.add_job(
                self._lease_tick,
                IntervalTrigger(seconds=renew),
                id="lease",
                coalesce=True,
                max_instances=1,
            )
        self.scheduler.add_job(
            self._reload_job,
            IntervalTrigger(seconds=jobs.reload_interval.total_seconds()),
            id="reload",
            coalesce=True,
            max_instances=1,
        )
        self.scheduler.add_job(
            self._flush_outbox,
            IntervalTrigger(seconds=15),
            id="outbox",
            coalesce=True,
            max_instances=1,
        )
        self.started = True

    async def stop(self) -> None:
        """Stop scheduling, let running jobs finish within the grace period, flush."""
        self.started = False
        self.backtests.close()  # in memory only: nothing to keep
        # Pause first and shut the scheduler down last: its shutdown cancels the coroutines
        # still awaiting their runs, so runs that finish within the grace period would
        # otherwise go unrecorded in the metrics and log a CancelledError traceback.
        self.scheduler.pause()
        grace = self.app.settings.jobs.shutdown_grace.total_seconds()
        await asyncio.to_thread(self.dispatcher.shutdown, grace)
        await self.runs.settle(timeout=2)  # record the runs that ended within the grace
        self.scheduler.shutdown(wait=False)
        if self.lease is not None and self.leader:
            try:
                await asyncio.to_thread(self.lease.release)  # the standby takes over now
            except OpenAnomalyError as exc:
                log.warning("could not release the scheduler lease: %s", exc)

    @property
    def leading(self) -> bool:
        """Whether to run jobs now: always in light mode; in cluster mode while we hold the
        lease and it has not lapsed by our own clock (a stalled renewal must not let two
        schedulers run jobs)."""
        if self.lease is None:
            return True
        return self.leader and time.monotonic() < self._lease_until

    def _interrupt_orphans(self) -> None:
        interrupted = self.app.registry.interrupt_running()
        if interrupted:
            log.warning("%d run(s) were interrupted by the last shutdown or crash", interrupted)

    async def _lease_tick(self) -> None:
        """Take or renew the scheduler lease (cluster mode); a change is logged and applied."""
        assert self.lease is not None
        asked = time.monotonic()  # the database's expiry is at most a TTL after this
        try:
            state = await asyncio.to_thread(self.lease.acquire)
            leading, holder = state.leader, state.holder
        except OpenAnomalyError as exc:  # cannot prove we lead: stop scheduling until we can
            leading, holder = False, f"unknown ({exc})"
        if leading:
            self._lease_until = asked + self.app.settings.dispatcher.lease_ttl.total_seconds()
        if leading and not self.leader:
            log.warning("leading now (fence %d): scheduling every pipeline", self.lease.fence)
            self.leader = True
            try:
                # The previous leader's unfinished runs will never be finished by it.
                await asyncio.to_thread(self._interrupt_orphans)
                for state_ in list(self.pipelines.values()):  # train times from the registry
                    self._schedule(state_.loaded, changed=False, quiet=True)
            except OpenAnomalyError as exc:  # the jobs stay scheduled; the next tick is fine
                log.error("taking over: %s", exc)
        elif not leading and self.leader:
            log.warning("not leading: the scheduler lease is held by %s", holder)
            self.leader = False
        self.metrics.leader.set(1 if self.leader else 0)

    # --- pipelines -------------------------------------------------------------------------

    async def _reload_job(self) -> None:
        # A coroutine job runs on the event loop, as SIGHUP's reload does: the two never
        # interleave (a plain function job would run on APScheduler's own thread pool).
        self.reload()

    def reload(self, *, force: bool = False) -> None:
        """Apply pipelines_dir: new pipelines start, changed ones restart, removed ones stop.
        A file that fails validation keeps its last good pipelines running. Runs on the event
        loop only."""
        fingerprint = self.app.pipelines.fingerprint()
        if fingerprint == self._fingerprint and not force:
            return
        loaded = self.app.pipelines.load()
        broken_files = {p.where for p in loaded.problems}
        fresh = {item.pipeline.name: item for item in loaded.pipelines}
        for name, state in list(self.pipelines.items()):
            if name in fresh:
                continue
            if state.loaded.source in broken_files:
                log.error("%s: its file has problems; the last good version keeps running", name)
                continue
            self._remove(name)
        for name, item in fresh.items():
            current = self.pipelines.get(name)
            if current is None or current.loaded.pipeline != item.pipeline:
                self._schedule(item, changed=current is not None)
            else:
                self.pipelines[name] = PipelineState(item)
        for problem in loaded.problems:
            log.error("pipeline not loaded: %s", problem)
        self.problems = loaded.problems
        self.metrics.reloads.labels("ok" if not loaded.problems else "problems").inc()
        self.metrics.reload_success.set(0 if loaded.problems else 1)
        self.metrics.pipelines.set(len(self.pipelines))
        self.metrics.pipeline_problems.set(len(loaded.problems))
        # Only now: if applying raised part-way (registry down), the next tick tries again.
        self._fingerprint = fingerprint

    def _schedule(self, item: LoadedPipeline, *, changed: bool, quiet: bool = False) -> None:
        pipeline = item.pipeline
        name = pipeline.name
        self.pipelines[name] = PipelineState(item)
        if changed:
            self.runner.models.forget(name)
            self.runner.contexts.forget(name)
            log.info("%s: changed in %s; rescheduled", name, item.source)
        elif not quiet:
            log.info("pipeline %s loaded from %s:%d", name, item.source, item.line)
        trigger: Any
        if pipeline.train.cron is not None:
            trigger = CronTrigger.from_crontab(pipeline.train.cron, timezone=UTC)
        else:
            every = pipeline.train.every or timedelta(days=1)
            trigger = IntervalTrigger(seconds=every.total_seconds())
        active = self.app.registry.active_model(name)
        now = datetime.now(UTC)
        first_run: Any = undefined  # APScheduler: from the trigger (None would pause the job)
        if active is None or active.config_hash != pipeline.config_hash():
            first_run = now  # no model for this configuration yet
        elif pipeline.train.cron is None:  # keep the cadence across restarts
            first_run = max(active.created + (pipeline.train.every or timedelta(days=1)), now)
        self.scheduler.add_job(
            self._train_job,
            trigger,
            args=[name],
            id=f"train:{name}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            next_run_time=first_run,
        )
        every = pipeline.infer.every
        start = floor_to_step(now, every) + every  # aligned to the grid of `every`
        self.scheduler.add_job(
            self._infer_job,
            _GridTrigger(seconds=every.total_seconds(), start_date=start),
            args=[name],
            id=f"infer:{name}",
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
        )

    def _remove(self, name: str) -> None:
        for kind in ("train", "infer"):
            if self.scheduler.get_job(f"{kind}:{name}") is not None:
                self.scheduler.remove_job(f"{kind}:{name}")
        self.pipelines.pop(name, None)
        self.metrics.forget(name)
        gone = self.runner.forget(name)
        if gone:
            at_ms = int(datetime.now(UTC).timestamp() * 1000)
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, self.app.writer.mark_stale, gone, at_ms)
        log.info("%s: removed; its output series are marked stale", name)

    # --- jobs ------------------------------------------------------------------------------

    async def _train_job(self, name: str) -> RunRecord | None:
        state = self.pipelines.get(name)
        if state is None or not self.leading:
            return None
        pipeline = state.loaded.pipeline
        scheduled = self.app.clock()
        timeout = self.app.settings.jobs.train_timeout.total_seconds()
        job = train_job(pipeline, scheduled)
        run = await self.runs.run(name, "train", [job], scheduled, timeout, fence=self._fence())
        if run is not None and run.status == "ok":
            self.last_tsdb_ok = datetime.now(UTC)
            active = await asyncio.to_thread(self.app.registry.active_model, name)
            if active is not None:
                self.metrics.model_created.labels(name).set(active.created.timestamp())
        return run

    async def _infer_job(self, name: str) -> RunRecord | None:
        state = self.pipelines.get(name)
        if state is None or not self.leading:
            return None
        pipeline = state.loaded.pipeline
        scheduled = self.app.clock()
        try:
            plan = await asyncio.to_thread(
                lambda: plan_infer(
                    pipeline,
                    self.app.registry,
                    scheduled,
                    self.app.settings.tsdb.query_delay,
                    shard_series=self.shard_series,
                )
            )
        except OpenAnomalyError as exc:
            log.error("%s: infer not planned: %s", name, exc)
            return None
        if plan is None:
            return None  # the first train has not finished (or failed; that run says why)
        timeout = self.app.settings.jobs.infer_timeout.total_seconds()
        run = await self.runs.run(
            name, "infer", plan.jobs, scheduled, timeout, commit=plan.last, fence=self._fence()
        )
        if run is not None and run.status == "ok":
            self.last_tsdb_ok = datetime.now(UTC)
        return run

    def _fence(self) -> int | None:
        """The token a run commits under: taken when it is planned, not when it ends."""
        return self.lease.fence if self.lease is not None else None

    def trigger(self, name: str, kind: str) -> bool:
        """Run a pipeline's train or infer job now (API, retrain after a bad artifact)."""
        job = self.scheduler.get_job(f"{kind}:{name}")
        if job is None:
            return False
        job.modify(next_run_time=datetime.now(UTC))
        return True

    async def _flush_outbox(self) -> None:
        flush = getattr(self.app.writer, "flush_outbox", None)
        outbox = getattr(self.app.writer, "outbox", None)
        if flush is not None and outbox is not None and len(outbox):
            await asyncio.to_thread(flush)

    def state_of(self, name: str) -> dict[str, Any] | None:
        state = self.pipelines.get(name)
        if state is None:
            return None
        pipeline = state.loaded.pipeline
        active = self.app.registry.active_model(name)
        jobs = {}
        for kind in ("train", "infer"):
            job = self.scheduler.get_job(f"{kind}:{name}") if self.started else None
            next_run = getattr(job, "next_run_time", None)
            jobs[kind] = next_run.isoformat() if next_run else None
        watermark = self.app.registry.watermark(name)
        last_runs = {
            kind: next(iter(self.app.registry.runs(name, kind=kind, limit=1)), None)
            for kind in ("train", "infer")
        }
        return {
            "name": name,
            "source": f"{state.loaded.source}:{state.loaded.line}",
            "config_hash": pipeline.config_hash(),
            "model": active.version if active is not None else None,
            "model_stale": active is not None and active.config_hash != pipeline.config_hash(),
            "model_created": active.created.isoformat() if active is not None else None,
            "series_count": active.series_count if active is not None else None,
            "watermark": watermark.isoformat() if watermark else None,
            "next_run": jobs,
            "last_runs": last_runs,
            "pipeline": pipeline.model_dump(mode="json"),
        }

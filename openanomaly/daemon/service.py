"""The daemon: every pipeline's train and infer jobs on APScheduler, run on the dispatcher.

The asyncio loop only schedules and awaits; the work (reads, fits, writes) runs on the
dispatcher's threads, so the HTTP endpoints answer while a model trains. Each job has a
timeout: a hung run is recorded as failed and frees its slot (the thread itself cannot be
killed; the reader's own timeouts end it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from apscheduler.util import undefined

from openanomaly.daemon.metrics import DaemonMetrics
from openanomaly.domain.staleness import SeriesTracker
from openanomaly.errors import Problem
from openanomaly.ports import JobDispatcher, LoadedPipeline, RunRecord
from openanomaly.usecases.common import ModelCache, floor_to_step
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.infer import infer
from openanomaly.usecases.train import train

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
    def __init__(self, app: App, dispatcher: JobDispatcher, metrics: DaemonMetrics) -> None:
        self.app = app
        self.dispatcher = dispatcher
        self.metrics = metrics
        self.models = ModelCache()
        self.contexts = ContextCache()  # incremental reads between infer cycles
        self.tracker = SeriesTracker()
        self.pipelines: dict[str, PipelineState] = {}
        self.problems: list[Problem] = []
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._fingerprint = ""
        self.started = False
        self.last_tsdb_ok: datetime | None = None
        # Runs still executing, by (pipeline, kind). A run past its timeout keeps its thread
        # (threads cannot be killed): no second run of that kind starts until it ends, or
        # two runs of one pipeline could race on its watermark and take every worker.
        self._running: dict[tuple[str, str], Any] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        interrupted = self.app.registry.interrupt_running()
        if interrupted:
            log.warning("%d run(s) were interrupted by the last shutdown or crash", interrupted)
        jobs = self.app.settings.jobs
        self.scheduler.start()
        self.reload()
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
        # Pause first and shut the scheduler down last: its shutdown cancels the coroutines
        # still awaiting their runs, so runs that finish within the grace period would
        # otherwise go unrecorded in the metrics and log a CancelledError traceback.
        self.scheduler.pause()
        grace = self.app.settings.jobs.shutdown_grace.total_seconds()
        await asyncio.to_thread(self.dispatcher.shutdown, grace)
        await asyncio.sleep(0)  # let the finished runs' coroutines record them
        self.scheduler.shutdown(wait=False)

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

    def _schedule(self, item: LoadedPipeline, *, changed: bool) -> None:
        pipeline = item.pipeline
        name = pipeline.name
        self.pipelines[name] = PipelineState(item)
        if changed:
            self.models.forget(name)
            self.contexts.forget(name)
            log.info("%s: changed in %s; rescheduled", name, item.source)
        else:
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
        self.models.forget(name)
        self.contexts.forget(name)
        self.metrics.forget(name)
        gone = self.tracker.remove(name)
        if gone:
            at_ms = int(datetime.now(UTC).timestamp() * 1000)
            self.dispatcher.submit(f"stale:{name}", lambda: self.app.writer.mark_stale(gone, at_ms))
        log.info("%s: removed; its output series are marked stale", name)

    # --- jobs ------------------------------------------------------------------------------

    async def _train_job(self, name: str) -> RunRecord | None:
        state = self.pipelines.get(name)
        if state is None:
            return None
        pipeline = state.loaded.pipeline
        scheduled = datetime.now(UTC)
        keep = self.app.settings.jobs.keep_models
        timeout = self.app.settings.jobs.train_timeout.total_seconds()
        future = self._submit(
            name,
            "train",
            lambda: train(pipeline, self.app.ports(), keep_models=keep, scheduled=scheduled),
        )
        if future is None:
            return None
        run = await self._await(future, timeout, pipeline.name, "train", scheduled)
        if run is not None and run.status == "ok":
            self.last_tsdb_ok = datetime.now(UTC)
            active = self.app.registry.active_model(name)
            if active is not None:
                self.metrics.model_created.labels(name).set(active.created.timestamp())
        return run

    async def _infer_job(self, name: str) -> RunRecord | None:
        state = self.pipelines.get(name)
        if state is None:
            return None
        if await asyncio.to_thread(self.app.registry.active_model, name) is None:
            return None  # the first train has not finished (or failed; that run says why)
        pipeline = state.loaded.pipeline
        scheduled = datetime.now(UTC)
        timeout = self.app.settings.jobs.infer_timeout.total_seconds()
        outcomes: list[Any] = []

        def job() -> RunRecord:
            outcome = infer(
                pipeline,
                self.app.ports(),
                self.models,
                tracker=self.tracker,
                contexts=self.contexts,
                scheduled=scheduled,
            )
            outcomes.append(outcome)
            return outcome.run

        future = self._submit(name, "infer", job)
        if future is None:
            return None
        run = await self._await(future, timeout, name, "infer", scheduled)
        if run is not None and run.status == "ok":
            self.last_tsdb_ok = datetime.now(UTC)
        if outcomes and outcomes[0].needs_retrain:
            self.trigger(name, "train")
        return run

    def _submit(self, name: str, kind: str, fn: Any) -> Any:
        """Submit a run unless the last one of this kind is still executing (then None)."""
        previous = self._running.get((name, kind))
        if previous is not None and not previous.done():
            log.warning(
                "%s: %s run skipped: the previous one is still running past its timeout",
                name,
                kind,
            )
            self.metrics.runs.labels(name, kind, "skipped").inc()
            return None
        future = self.dispatcher.submit(f"{kind}:{name}", fn)
        self._running[(name, kind)] = future
        return future

    async def _await(
        self, future: Any, timeout: float, name: str, kind: str, scheduled: datetime
    ) -> RunRecord | None:
        try:
            run: RunRecord = await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except asyncio.CancelledError:  # shutting down: queued and abandoned runs end here
            log.info("%s: %s run not awaited any longer: the daemon is stopping", name, kind)
            return None
        except TimeoutError:
            log.error("%s: %s run exceeded its %.0fs timeout", name, kind, timeout)
            failed = RunRecord(
                name,
                kind,
                scheduled,
                scheduled,
                datetime.now(UTC),
                "failed",
                f"timed out after {timeout:.0f}s",
            )
            self.metrics.record(failed)
            return failed
        except Exception as exc:  # the use cases record their own failures; this is a bug
            log.exception("%s: %s job crashed: %s", name, kind, exc)
            return None
        self.metrics.record(run)
        return run

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
        return {
            "name": name,
            "source": f"{state.loaded.source}:{state.loaded.line}",
            "config_hash": pipeline.config_hash(),
            "model": active.version if active is not None else None,
            "model_stale": active is not None and active.config_hash != pipeline.config_hash(),
            "watermark": watermark.isoformat() if watermark else None,
            "next_run": jobs,
            "pipeline": pipeline.model_dump(mode="json"),
        }

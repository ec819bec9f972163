"""Cluster mode on Celery (the `celery` extra): the scheduler sends jobs, `openanomaly worker`
processes run them.

Delivery is at least once: tasks are acknowledged late (after they ran) and rejected back to
the queue when their worker process dies, and Redis redelivers a message nobody acknowledged
within the visibility timeout. Jobs are idempotent (the scheduler commits watermarks; a job
rewrites identical samples), so a second delivery is harmless. A job whose TSDB or registry
was down is retried with exponential backoff, `dispatcher.max_retries` times.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from openanomaly.config.settings import Settings
from openanomaly.domain.jobs import Job, JobResult
from openanomaly.errors import DispatchUnavailable, MissingExtra

if TYPE_CHECKING:
    from celery import Celery

    from openanomaly.usecases.jobs import JobRunner

log = logging.getLogger(__name__)

TASK = "openanomaly.run_job"
QUEUE = "openanomaly"
# Results are polled: often while a job is young (short jobs would otherwise wait most of a
# slow poll: a 10 ms job took 101 ms with a fixed 0.1 s), then at the slow rate.
_POLL_FAST, _POLL_SLOW, _YOUNG_SECONDS = 0.01, 0.1, 2.0


def _celery() -> Any:
    try:
        import celery
    except ImportError:
        raise MissingExtra("dispatcher.kind: celery", "celery", "celery") from None
    return celery


def celery_app(settings: Settings) -> Celery:
    """A Celery app configured from `settings` (not the global current app)."""
    celery = _celery()
    dispatcher = settings.dispatcher
    if dispatcher.broker_url is None:
        raise ValueError("dispatcher.broker_url is required for the celery dispatcher")
    broker = dispatcher.broker_url.get_secret_value()
    backend = (dispatcher.result_backend or dispatcher.broker_url).get_secret_value()
    visible = settings.visibility_timeout.total_seconds()
    longest = max(settings.jobs.train_timeout, settings.jobs.infer_timeout).total_seconds()
    transport = {
        "visibility_timeout": visible,
        # Look for messages of dead workers often enough that redelivery takes about the
        # visibility timeout, not kombu's default of up to 100 s on top of it.
        "unacked_restore_interval": max(1.0, min(10.0, visible / 4)),
        "unacked_restore_throttle": 1,
        "socket_connect_timeout": 5,
        "socket_timeout": 30,
    }
    app = celery.Celery("openanomaly", broker=broker, backend=backend, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a long train must not hold shards hostage
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        result_expires=3600,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker outage
        worker_hijack_root_logger=False,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        # The scheduler gives up on a run after its timeout; the worker stops the job soon after
        # (prefork pools enforce these; a solo worker cannot interrupt a running job), so a slow
        # job does not outlive the visibility timeout and get delivered a second time.
        task_soft_time_limit=longest,
        task_time_limit=longest + 60,
    )
    return app


class CeleryDispatcher:
    """The JobDispatcher port on Celery: `submit` publishes, a poller resolves the futures."""

    def __init__(self, settings: Settings, app: Celery | None = None) -> None:
        self._app = app or celery_app(settings)
        # A job not started within its run timeout plus two visibility timeouts (time for one
        # redelivery after its worker died) is dropped by the worker that finds it: the
        # scheduler gave up on it long ago and a later cycle covers its window.
        visible = settings.visibility_timeout.total_seconds()
        self._expires = {
            "train": settings.jobs.train_timeout.total_seconds() + 2 * visible,
            "infer": settings.jobs.infer_timeout.total_seconds() + 2 * visible,
        }
        # task id -> (AsyncResult, future, when sent, when to give up on ever hearing of it)
        self._pending: dict[str, tuple[Any, Future[JobResult], float, float]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="oa-celery-results", daemon=True)
        self._poller.start()

    def submit(self, job: Job) -> Future[JobResult]:
        from kombu.exceptions import OperationalError

        try:
            result = self._app.send_task(
                TASK,
                args=[job.to_json()],
                queue=QUEUE,
                expires=self._expires[job.kind],
                retry=True,
                retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 1},
            )
        except (OperationalError, OSError) as exc:
            raise DispatchUnavailable(f"cannot hand {job.name} to the broker: {exc}") from None
        except Exception as exc:  # e.g. RuntimeError: cannot reach the result store
            raise DispatchUnavailable(
                f"cannot hand {job.name} to the broker: {type(exc).__name__}: {exc}"
            ) from None
        future: Future[JobResult] = Future()
        future.set_running_or_notify_cancel()
        # A message can vanish (a broker restarted without persistence): resolve it as lost
        # a minute after it would have expired, so nothing waits on it for ever.
        sent = time.monotonic()
        with self._lock:
            self._pending[result.id] = (result, future, sent, sent + self._expires[job.kind] + 60)
        self._wake.set()
        return future

    def _poll(self) -> None:
        """Resolve futures whose tasks finished; a backend outage just delays them (the
        scheduler's run timeout bounds the wait)."""
        failing_since: float | None = None
        interval = _POLL_SLOW
        while not self._stop.is_set():
            self._wake.wait(interval)  # set by submit: a new job is polled fast at once
            self._wake.clear()
            with self._lock:
                pending = list(self._pending.items())
            now = time.monotonic()
            young = any(now - sent < _YOUNG_SECONDS for _, (_, _, sent, _) in pending)
            interval = _POLL_FAST if young else _POLL_SLOW
            try:
                for task_id, (result, future, _, give_up) in pending:
                    if result.ready():
                        outcome = _result_of(result)
                    elif time.monotonic() > give_up:
                        outcome = JobResult("failed", "lost: no worker reported on this job")
                    else:
                        continue
                    with self._lock:
                        self._pending.pop(task_id, None)
                    if not future.done():
                        future.set_result(outcome)
                failing_since = None
            except Exception as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning("cannot read job results from the result backend: %s", exc)

    def shutdown(self, grace: float) -> None:
        """Jobs already sent stay with the workers (a standby scheduler commits nothing of
        ours; the next cycle rescores); wait `grace` for the ones in flight to report."""
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            with self._lock:
                if not self._pending:
                    break
            time.sleep(_POLL_SLOW)
        self._stop.set()
        self._wake.set()
        with self._lock:
            abandoned = list(self._pending.values())
            self._pending.clear()
        for _, future, _, _ in abandoned:
            if not future.done():
                future.set_exception(DispatchUnavailable("the dispatcher shut down"))


def _result_of(result: Any) -> JobResult:
    if result.successful():
        return JobResult.from_json(result.get(propagate=False))
    error = result.result
    return JobResult("failed", f"the worker task crashed: {type(error).__name__}: {error}")


def register_task(app: Celery, runner: Callable[[], JobRunner], max_retries: int) -> None:
    """The worker side: the task that runs a job on this process's JobRunner (built on first
    use, so prefork children each build their own after the fork)."""
    built: list[JobRunner] = []

    @app.task(name=TASK, bind=True)  # type: ignore[untyped-decorator]
    def run_job(task: Any, job_json: str) -> str:
        if not built:
            built.append(runner())
        job = Job.from_json(job_json)
        outcome = built[0].run(job)
        retries = int(task.request.retries)
        if outcome.status != "ok" and outcome.retryable and retries < max_retries:
            delay = min(60, 2 ** (retries + 1))
            log.warning("%s: retrying in %ds: %s", job.name, delay, outcome.error)
            raise task.retry(countdown=delay, max_retries=max_retries)
        return outcome.to_json()


def run_worker(settings: Settings, runner: Callable[[], JobRunner], concurrency: int) -> None:
    """Consume jobs until stopped (SIGTERM: finish the running job, then exit)."""
    app = celery_app(settings)
    register_task(app, runner, settings.dispatcher.max_retries)
    pool = "solo" if concurrency == 1 else "prefork"
    app.worker_main(
        [
            "worker",
            f"--pool={pool}",
            f"--concurrency={concurrency}",
            f"--queues={QUEUE}",
            f"--hostname=openanomaly-{os.getpid()}@{socket.gethostname()}",
            "--without-mingle",
            "--without-gossip",
            f"--loglevel={settings.log.level.upper()}",
        ]
    )

"""`openanomaly worker`: a Celery worker that runs train and infer jobs (cluster mode)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

import typer

from openanomaly.cli import app, load, with_settings
from openanomaly.errors import ConfigError, Problem

log = logging.getLogger(__name__)


@app.command()
@with_settings
def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency",
            min=1,
            help="Jobs run at once (processes); default dispatcher.workers.",
        ),
    ] = None,
    *,
    settings_args: dict[str, Any],
) -> None:
    """Run jobs sent by `openanomaly run --dispatcher celery` (needs the celery extra).

    Uses the same settings file as the scheduler: the broker, the registry (PostgreSQL) and the
    artifact store (a shared filesystem or S3) must be the same for every process; the pipeline
    files are not needed here, each job carries its pipeline."""
    from openanomaly.adapters.job_dispatcher.celery import run_worker
    from openanomaly.bootstrap import build
    from openanomaly.logs import configure_logging
    from openanomaly.usecases.jobs import JobRunner

    loaded = load(settings_args)
    settings = loaded.settings
    configure_logging(settings.log)
    if settings.dispatcher.broker_url is None:
        reason = "a worker needs the broker: set dispatcher.broker_url (e.g. redis://host:6379/0)"
        raise ConfigError([Problem("dispatcher.broker_url", 0, "", reason)])
    if settings.storage.registry_url is None or settings.storage.registry_url.startswith("sqlite"):
        log.warning(
            "storage.registry_url is SQLite: fine on one machine, but workers elsewhere need a "
            "shared registry (postgresql://...)"
        )

    def runner() -> JobRunner:
        # Built in each pool process (after the fork), with an outbox of its own: processes
        # sharing one would number their batches alike and overwrite each other's.
        import socket

        from billiard import current_process

        index = getattr(current_process(), "index", 0)
        outbox = settings.storage.data_dir / f"outbox-{socket.gethostname()}-{index}"
        application = build(settings, outbox_dir=outbox)
        return JobRunner(application.ports, keep_models=settings.jobs.keep_models)

    run_worker(settings, runner, concurrency or settings.dispatcher.workers)

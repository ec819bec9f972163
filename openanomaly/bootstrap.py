"""The composition root: the only place that picks adapters and wires them together.

Nothing here runs at import time; callers (CLI, tests) call `build` with validated settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from openanomaly.adapters.artifact_store import artifact_store
from openanomaly.adapters.job_dispatcher.threads import ThreadPoolDispatcher
from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.model_engine.factory import model_engine
from openanomaly.adapters.model_registry.lease import SqlLease
from openanomaly.adapters.model_registry.sql import SqlRegistry
from openanomaly.adapters.pipeline_source.directory import DirectoryPipelineSource
from openanomaly.config.settings import Settings
from openanomaly.errors import ConfigError, Problem
from openanomaly.ports import (
    ArtifactStore,
    JobDispatcher,
    LeaderLease,
    MetricsReader,
    MetricsWriter,
    ModelEngine,
    PipelineSource,
)
from openanomaly.usecases.common import Clock, Ports, utc_now
from openanomaly.usecases.jobs import JobRunner


@dataclass(frozen=True)
class App:
    """Everything a command needs, built once from settings."""

    settings: Settings
    pipelines: PipelineSource
    reader: MetricsReader
    writer: MetricsWriter
    registry: SqlRegistry
    artifacts: ArtifactStore
    clock: Clock = utc_now
    _engines: dict[str, ModelEngine] = field(default_factory=dict)

    def engine_for(self, name: str) -> ModelEngine:
        """One engine object per engine name, built on first use (engines are stateless)."""
        engine = self._engines.get(name)
        if engine is None:
            engine = self._engines[name] = model_engine(name)
        return engine

    def ports(self) -> Ports:
        return Ports(
            reader=self.reader,
            writer=self.writer,
            registry=self.registry,
            artifacts=self.artifacts,
            engine_for=self.engine_for,
            clock=self.clock,
            query_delay=self.settings.tsdb.query_delay,
        )

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed; the outbox keeps the rest for the next start."""
        try:
            self.writer.close(timeout)
        finally:
            self.reader.close()
            self.registry.close()


def build(settings: Settings, clock: Clock | None = None, *, outbox_dir: Path | None = None) -> App:
    """Wire the adapters. Creates the data directory and opens the registry (applying schema
    migrations); opens no TSDB connection. `clock` is for tests that replay time;
    `outbox_dir` gives a process its own outbox (worker processes sharing a data directory
    must not share one: each numbers its batches on its own)."""
    try:
        settings.storage.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = f"cannot create {settings.storage.data_dir}: {exc.strerror}"
        raise ConfigError([Problem("storage.data_dir", 0, "", reason)]) from None
    return App(
        settings=settings,
        pipelines=DirectoryPipelineSource(settings.pipelines_dir, model_catalog),
        reader=PrometheusReader(settings.tsdb),
        writer=RemoteWriteWriter(
            settings.tsdb,
            settings.remote_write,
            outbox_dir or settings.storage.data_dir / "outbox",
        ),
        registry=SqlRegistry(settings.storage.effective_registry_url),
        artifacts=artifact_store(
            settings.storage.effective_artifacts_url, settings.storage.artifacts_options
        ),
        clock=clock or utc_now,
    )


@dataclass(frozen=True)
class Dispatch:
    """How the daemon runs jobs: the dispatcher, this process's runner, and (cluster mode)
    the scheduler lease and shard size."""

    dispatcher: JobDispatcher
    runner: JobRunner
    lease: LeaderLease | None = None
    shard_series: int | None = None


def build_dispatch(app: App) -> Dispatch:
    """Threads in light mode; Celery (the `celery` extra) with a lease in cluster mode."""
    settings = app.settings
    runner = JobRunner(app.ports, keep_models=settings.jobs.keep_models)
    if settings.dispatcher.kind == "threads":
        return Dispatch(ThreadPoolDispatcher(settings.dispatcher.workers, runner.run), runner)
    from openanomaly.adapters.job_dispatcher.celery import CeleryDispatcher

    return Dispatch(
        CeleryDispatcher(settings),
        runner,
        SqlLease(app.registry, settings.dispatcher.lease_ttl),
        settings.dispatcher.shard_series,
    )

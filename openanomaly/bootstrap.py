"""The composition root: the only place that picks adapters and wires them together.

Nothing here runs at import time; callers (CLI, tests) call `build` with validated settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.pipeline_source.directory import DirectoryPipelineSource
from openanomaly.config.settings import Settings
from openanomaly.errors import ConfigError, Problem
from openanomaly.ports import MetricsReader, MetricsWriter, PipelineSource


@dataclass(frozen=True)
class App:
    """Everything a command needs, built once from settings."""

    settings: Settings
    pipelines: PipelineSource
    reader: MetricsReader
    writer: MetricsWriter

    def close(self, timeout: float = 10.0) -> None:
        """Flush what can be flushed; the outbox keeps the rest for the next start."""
        self.writer.close(timeout)
        self.reader.close()


def build(settings: Settings) -> App:
    """Wire the adapters. Creates the data directory; opens no connection."""
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
            settings.tsdb, settings.remote_write, settings.storage.data_dir / "outbox"
        ),
    )

"""The composition root: the only place that picks adapters and wires them together.

Nothing here runs at import time; callers (CLI, tests) call `build` with validated settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.adapters.model_engine.custom import CustomEngineCatalog
from openanomaly.adapters.model_engine.mlforecast import MLForecastCatalog
from openanomaly.adapters.model_engine.neuralforecast import NeuralForecastCatalog
from openanomaly.adapters.model_engine.statsforecast import StatsForecastCatalog
from openanomaly.adapters.pipeline_source.directory import DirectoryPipelineSource
from openanomaly.config.settings import Settings
from openanomaly.ports import MetricsReader, MetricsWriter, ModelCatalog, PipelineSource


def model_catalog(engine: str) -> ModelCatalog:
    """The catalog of a pipeline's `model.engine` (built-in name or `package.module:Class`)."""
    builtins: dict[str, type[ModelCatalog]] = {
        "statsforecast": StatsForecastCatalog,
        "mlforecast": MLForecastCatalog,
        "neuralforecast": NeuralForecastCatalog,
    }
    factory = builtins.get(engine)
    return factory() if factory is not None else CustomEngineCatalog(engine)


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
    return App(
        settings=settings,
        pipelines=DirectoryPipelineSource(settings.pipelines_dir, model_catalog),
        reader=PrometheusReader(settings.tsdb),
        writer=RemoteWriteWriter(
            settings.tsdb, settings.remote_write, settings.storage.data_dir / "outbox"
        ),
    )

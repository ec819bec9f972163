"""What the train and infer use cases share: their ports, the clock, the step grid."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from threading import Lock
from typing import Any, TypedDict

from openanomaly.errors import ArtifactCorrupt, IncompatibleArtifact, OpenAnomalyError
from openanomaly.ports import (
    ArtifactStore,
    MetricsReader,
    MetricsWriter,
    ModelEngine,
    ModelRecord,
    ModelRegistry,
)

Clock = Callable[[], datetime]


class RunCounts(TypedDict, total=False):
    """A run's series and sample counts, as RunRecord and JobResult name them."""

    series_in: int
    series_scored: int
    series_skipped: int
    samples_written: int


def utc_now() -> datetime:
    return datetime.now(UTC)


def floor_to_step(at: datetime, step: timedelta) -> datetime:
    """The newest multiple of `step` since the epoch at or before `at` (query_range's grid)."""
    step_us = step // timedelta(microseconds=1)
    since = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=since - since % step_us)


class NeedsRetrain(OpenAnomalyError):
    """The active model cannot be used (missing, corrupt or incompatible artifact)."""


@dataclass
class Ports:
    reader: MetricsReader
    writer: MetricsWriter
    registry: ModelRegistry
    artifacts: ArtifactStore
    engine_for: Callable[[str], ModelEngine]
    clock: Clock = utc_now
    query_delay: timedelta = timedelta(seconds=30)


@dataclass
class ModelCache:
    """Loaded models by pipeline, one version each. A newer active version replaces the old
    one on the next `get`; the swap is a dict assignment, so a running infer keeps the model
    object it started with."""

    _models: dict[str, tuple[int, Any]] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)

    def get(self, record: ModelRecord, ports: Ports) -> Any:
        with self._lock:
            cached = self._models.get(record.pipeline)
        if cached is not None and cached[0] == record.version:
            return cached[1]
        engine = ports.engine_for(record.engine)
        try:
            model = engine.loads(ports.artifacts.get(record.artifact))
        except (ArtifactCorrupt, IncompatibleArtifact) as exc:
            raise NeedsRetrain(f"model v{record.version} of {record.pipeline}: {exc}") from exc
        with self._lock:
            self._models[record.pipeline] = (record.version, model)
        return model

    def forget(self, pipeline: str) -> None:
        with self._lock:
            self._models.pop(pipeline, None)

"""The ports: what the core needs from the outside world, as Protocols with their contracts.

The core (domain, use cases, scheduler) depends only on these. Adapters under
`openanomaly/adapters/<port>/<technology>.py` implement them and translate third-party exceptions
into `openanomaly.errors` at their edge. Every adapter of a port must pass that port's shared
contract test suite in `tests/contracts/`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from openanomaly.domain.jobs import Job, JobResult, LeaseState
from openanomaly.domain.labels import LabelTuple
from openanomaly.errors import Problem

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

    from openanomaly.config.pipeline import ModelSpec, Pipeline
    from openanomaly.domain.series import SeriesFrame

T = TypeVar("T")


# --- metrics -------------------------------------------------------------------------------


class MetricsReader(Protocol):
    """Reads history from a Prometheus-compatible TSDB."""

    def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        *,
        max_series: int | None = None,
    ) -> SeriesFrame:
        """Evaluate `query` at every `step` from `start` to `end`, both inclusive, aligned to
        multiples of `step` since the epoch.

        Contract: one series per distinct label set; timestamps strictly increasing per series;
        gaps stay gaps; NaN/+Inf/-Inf come back as float values. More than `max_series` series
        raises TSDBQueryError. Unreachable, timeouts and 5xx after the retry budget raise
        TSDBUnavailable; a refused query raises TSDBQueryError with the server's message.
        """
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class OutputSeries:
    """One series to write: labels sorted by name, unique, valid, non-empty, `__name__`
    included (build them with `domain.labels.output_labels`); samples in timestamp order."""

    labels: LabelTuple
    timestamps_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class WriteResult:
    accepted: int = 0
    queued: int = 0
    dropped: int = 0
    errors: list[str] = field(default_factory=list)


class MetricsWriter(Protocol):
    """Writes forecasts, bands and scores back through Prometheus remote write."""

    def write(self, series: Sequence[OutputSeries]) -> WriteResult:
        """Deliver samples, or keep them durably for later delivery.

        Contract: returns only when every sample is accepted by the TSDB or persisted in the
        outbox (`queued`); samples are `dropped` only when the TSDB refuses them for good (4xx
        other than 429) or an outbox bound forces it, and each drop is counted and logged.
        """
        ...

    def mark_stale(self, series: Sequence[LabelTuple], at_ms: int) -> WriteResult:
        """Write Prometheus stale markers for output series that disappeared."""
        ...

    def close(self, timeout: float) -> None:
        """Flush what can be flushed within `timeout` seconds; the outbox keeps the rest."""
        ...


# --- models --------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogIssue:
    """A problem with a model section; `field` is relative to `model` (`name`, `params.x`)."""

    field: str
    reason: str


class ModelCatalog(Protocol):
    """Knows an engine's models without fitting anything; used by `validate`."""

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        """Issues with a model name and its parameters; empty when the engine can build it.

        Contract: cheap (no fitting, no data); never raises for bad user input.
        """
        ...


class ModelEngine(ModelCatalog, Protocol):
    """Fits forecasting models on many series at once and predicts bands from them."""

    def fit(self, frame: SeriesFrame, spec: ModelSpec, step: timedelta) -> Any:
        """Fit on history; returns an opaque fitted model covering every fittable series."""
        ...

    def dumps(self, model: Any) -> bytes:
        """Serialize a fitted model, with enough metadata to refuse an incompatible load."""
        ...

    def loads(self, blob: bytes) -> Any:
        """Inverse of dumps; raises IncompatibleArtifact for other library versions."""
        ...

    def predict(
        self, model: Any, context: SeriesFrame, at: Sequence[datetime], level: float
    ) -> pd.DataFrame:
        """Columns unique_id, ds, yhat, yhat_lower, yhat_upper for each series and time in `at`,
        and optionally train_min, train_max: the range of the series' training data, which
        `scoring.outside_range` needs (without them that part of the score is 0).

        Contract: the forecast for time t uses only context before t (no look-ahead).
        Series asked for but not scored appear in `result.attrs["skipped"]` as
        {unique_id: reason} (too short, new since training, failed to fit, ...).
        """
        ...


# --- storage -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtifactRef:
    uri: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    """Keeps model artifacts (bytes) on local disk, a shared filesystem or object storage."""

    def put(self, key: str, data: bytes) -> ArtifactRef:
        """Write atomically: readers see the whole artifact or none of it.

        Contract: `key` is a relative, `/`-separated name such as
        `{pipeline}/v{version}-{sha12}.bin`; a key that would escape the store (absolute, `..`)
        raises ValueError. The ref carries the uri, the sha256 hex digest and the size of `data`.
        Putting an existing key replaces it.
        """
        ...

    def get(self, ref: ArtifactRef) -> bytes:
        """Read and verify the checksum before returning; raise ArtifactCorrupt otherwise.

        Contract: a missing, truncated or altered artifact raises ArtifactCorrupt naming the uri
        and what was expected versus found; partial bytes are never returned.
        """
        ...

    def delete(self, uri: str) -> None:
        """Remove an artifact; deleting a missing one is not an error."""
        ...


@dataclass(frozen=True)
class ModelRecord:
    pipeline: str
    version: int
    config_hash: str
    engine: str
    artifact: ArtifactRef
    created: datetime
    series_count: int
    train_start: datetime
    train_end: datetime
    fit_seconds: float
    status: str = "active"


@dataclass(frozen=True)
class RunRecord:
    pipeline: str
    kind: str  # train | infer | backtest
    scheduled: datetime
    started: datetime
    finished: datetime | None = None
    status: str = "running"  # running | ok | failed
    error: str | None = None
    series_in: int = 0
    series_scored: int = 0
    series_skipped: int = 0
    samples_written: int = 0
    id: int | None = None


class ModelRegistry(Protocol):
    """Durable state: model versions, runs and per-pipeline scoring watermarks.

    Contract for every method: datetimes go in timezone-aware and come back aware in UTC (a naive
    datetime raises ValueError); a database that cannot be reached or written raises
    RegistryUnavailable; one written by a newer OpenAnomaly raises RegistrySchemaTooNew on open.
    """

    def add_model(self, record: ModelRecord) -> ModelRecord:
        """Store a new version and make it the active one, retiring the previous, atomically.

        Contract: `record.version` and `record.status` are ignored; the version is one more than
        the pipeline's highest ever stored, assigned in the same transaction, so concurrent
        writers (threads, processes) never get the same number. Returns the stored record.
        """
        ...

    def active_model(self, pipeline: str) -> ModelRecord | None:
        """The pipeline's active model, or None when it has none (never trained, or deleted)."""
        ...

    def models(self, pipeline: str | None = None) -> list[ModelRecord]:
        """Every stored model of `pipeline` (of all pipelines when None), newest first."""
        ...

    def model(self, pipeline: str, version: int) -> ModelRecord | None:
        """One stored version (active or retired), or None when it does not exist (pruned)."""
        ...

    def retired_models(self, pipeline: str, keep: int) -> list[ModelRecord]:
        """Retired models older than the pipeline's newest `keep` versions, newest first.

        For artifact pruning: the newest `keep` versions (active or not) are never listed, and
        neither is the active model; `keep=0` lists every retired model.
        """
        ...

    def delete_model(self, pipeline: str, version: int) -> None:
        """Remove a model's record (its artifact is the caller's to delete); deleting a missing
        one is not an error. Deleting the active model leaves the pipeline without one."""
        ...

    def start_run(self, run: RunRecord) -> RunRecord:
        """Record a run as running; returns it with its id."""
        ...

    def finish_run(self, run: RunRecord) -> None:
        """Store a started run's outcome (status ok|failed, error, counts) by its id.

        Contract: `run.id` must come from start_run (ValueError otherwise); a None `finished`
        is stored as now.
        """
        ...

    def runs(
        self,
        pipeline: str | None = None,
        *,
        failed_only: bool = False,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        """Up to `limit` runs of `pipeline` (all when None), newest started first; with
        `failed_only`, only runs whose status is failed or interrupted; with `kind`, only runs
        of that kind."""
        ...

    def interrupt_running(self) -> int:
        """Mark every run still `running` as `interrupted` and return how many.

        Called once at daemon start: such runs belonged to a process that was killed. Only call
        it when no other live process records runs in the same registry.
        """
        ...

    def watermark(self, pipeline: str) -> datetime | None:
        """The newest timestamp already scored and delivered (or queued) for `pipeline`."""
        ...

    def set_watermark(self, pipeline: str, at: datetime, *, fence: int | None = None) -> bool:
        """Insert or replace the pipeline's watermark (moving it backwards is allowed).

        With `fence` (cluster mode), the write happens only while `fence` is the scheduler
        lease's current token, and only forward; returns False when the fence is stale (another
        scheduler took over) and the watermark is left alone. Without it, always True.
        """
        ...

    def forget_pipeline(self, pipeline: str) -> None:
        """Drop the pipeline's watermark; its models and runs stay as history."""
        ...

    def ping(self) -> None:
        """Raise RegistryUnavailable unless the database answers a trivial query now."""
        ...

    def close(self) -> None:
        """Release connections; the registry must not be used afterwards."""
        ...


# --- pipelines and execution ---------------------------------------------------------------


@dataclass(frozen=True)
class LoadedPipeline:
    pipeline: Pipeline
    source: str  # file path
    line: int


@dataclass(frozen=True)
class PipelineSet:
    """Valid pipelines plus every problem found; one bad pipeline never hides the others."""

    pipelines: list[LoadedPipeline]
    problems: list[Problem]

    def by_name(self) -> dict[str, LoadedPipeline]:
        return {p.pipeline.name: p for p in self.pipelines}


class PipelineSource(Protocol):
    """Where pipeline definitions come from (a directory of YAML files, by default)."""

    def load(self) -> PipelineSet:
        """Read and validate every pipeline; never raises for bad user input."""
        ...

    def fingerprint(self) -> str:
        """Cheap value that changes whenever `load()` could return something different."""
        ...

    def parse(self, text: str, source: str) -> PipelineSet:
        """Validate pipeline text as `load()` validates a file named `source` (not saved).
        The text comes from elsewhere (the API): a custom engine it names that no loaded
        pipeline uses is a problem, never imported."""
        ...

    def save(self, name: str, text: str, *, overwrite: bool) -> str:
        """Store `text` as the definition of pipeline `name` so the next `load()` has it;
        return where it went. Raises PipelineRejected (with problems) when the text is not
        exactly one valid pipeline named `name`, PipelineConflict when that would replace a
        definition and `overwrite` is false, or when another file defines `name`, and
        OpenAnomalyError when it cannot be stored."""
        ...


class JobDispatcher(Protocol):
    """Runs train and infer jobs somewhere: local threads, or Celery workers.

    Contract: `submit` never runs the job inline; the future resolves to the job's JobResult
    (failures of the job itself are a `failed` result, not an exception). It fails with
    DispatchUnavailable when the job could not be handed over (broker down), so the caller can
    record that; a job handed over may run more than once (redelivery), so jobs are idempotent.
    """

    def submit(self, job: Job) -> Future[JobResult]:
        """Hand `job` over for execution."""
        ...

    def shutdown(self, grace: float) -> None:
        """Stop accepting work; wait up to `grace` seconds for running jobs."""
        ...


class LeaderLease(Protocol):
    """Which of several schedulers leads (cluster mode): one at a time, with a fencing token.

    Contract: `acquire` takes the lease when it is free or expired and renews it when held;
    it returns whether we lead. The token (`fence`) grows with every change of holder and is 0
    while we do not lead. `release` gives it up at once (clean shutdown).
    """

    fence: int

    def acquire(self) -> LeaseState: ...

    def release(self) -> None: ...

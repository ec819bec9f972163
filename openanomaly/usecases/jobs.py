"""Jobs: what the scheduler plans and what a worker (a local thread or a Celery worker) runs.

The scheduler owns the run records and the watermark: it plans an infer cycle (model version,
window, shards), hands the jobs to the dispatcher, and commits the watermark only when every
shard succeeded. A worker only scores and writes, so a job may run twice (a redelivery after a
worker died) without harm: the same window with the same model writes the same samples.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.jobs import Job, JobResult
from openanomaly.domain.labels import LabelTuple
from openanomaly.domain.shards import shard_count
from openanomaly.domain.staleness import SeriesTracker
from openanomaly.errors import ArtifactStoreUnavailable, RegistryUnavailable, TSDBUnavailable
from openanomaly.ports import ModelRecord, ModelRegistry
from openanomaly.usecases.common import ModelCache, NeedsRetrain, Ports, RunCounts
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.infer import score_window, scoring_window
from openanomaly.usecases.train import error_text, train_model

log = logging.getLogger(__name__)

# Failures worth a retry on another attempt (the dependency may be back); anything else is a
# property of the job and would fail the same way again.
TRANSIENT = (TSDBUnavailable, RegistryUnavailable, ArtifactStoreUnavailable)


def train_job(pipeline: Pipeline, scheduled: datetime) -> Job:
    return Job(
        "train", pipeline.name, pipeline.model_dump_json(), pipeline.config_hash(), scheduled
    )


@dataclass(frozen=True)
class InferPlan:
    model: ModelRecord
    last: datetime  # the watermark to commit when every job succeeded
    jobs: list[Job]  # empty when there is nothing new to score


def plan_infer(
    pipeline: Pipeline,
    registry: ModelRegistry,
    now: datetime,
    delay: timedelta,
    *,
    shard_series: int | None = None,
) -> InferPlan | None:
    """The jobs of one infer cycle, or None when the pipeline has no model yet. With
    `shard_series`, the series are split into shards of about that many (by the model's
    series count, so shards stay put until the next train)."""
    model = registry.active_model(pipeline.name)
    if model is None:
        return None
    first, last = scoring_window(pipeline, now, delay, registry.watermark(pipeline.name))
    if first > last:
        return InferPlan(model, last, [])
    shards = 1 if shard_series is None else shard_count(model.series_count, shard_series)
    definition = pipeline.model_dump_json()
    jobs = [
        Job(
            "infer",
            pipeline.name,
            definition,
            pipeline.config_hash(),
            now,
            model_version=model.version,
            first=first,
            last=last,
            shard=k,
            shards=shards,
        )
        for k in range(shards)
    ]
    return InferPlan(model, last, jobs)


def combine(results: list[JobResult]) -> tuple[RunCounts, str | None, bool]:
    """Summed counts, the failures' errors (None when every job succeeded), and whether any
    job found the model unusable."""
    counts: RunCounts = {
        "series_in": sum(r.series_in for r in results),
        "series_scored": sum(r.series_scored for r in results),
        "series_skipped": sum(r.series_skipped for r in results),
        "samples_written": sum(r.samples_written for r in results),
    }
    failed = [r for r in results if r.status != "ok"]
    error = None
    if len(results) == 1 and failed:
        error = failed[0].error or "failed"
    elif failed:
        distinct = list(dict.fromkeys(r.error or "failed" for r in failed))
        error = f"{len(failed)} of {len(results)} shards failed: " + "; ".join(distinct[:3])
    return counts, error, any(r.needs_retrain for r in results)


class JobRunner:
    """Runs jobs in this process, keeping what makes the next job cheap: loaded models,
    cached contexts and the output series seen (for staleness markers)."""

    def __init__(
        self, ports: Callable[[], Ports], *, keep_models: int, worker: str | None = None
    ) -> None:
        self._ports = ports
        self.keep_models = keep_models
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.models = ModelCache()
        self.contexts = ContextCache()
        self.tracker = SeriesTracker()

    def run(self, job: Job) -> JobResult:
        try:
            ports = self._ports()
            pipeline = _pipeline_of(job)
            if job.kind == "train":
                counts = train_model(
                    pipeline, ports, keep_models=self.keep_models, until=job.scheduled
                )
            else:
                counts = self._infer(pipeline, ports, job)
        except NeedsRetrain as exc:
            log.error("%s: %s; the scheduler retrains", job.name, exc)
            return JobResult("failed", error_text(exc), needs_retrain=True, worker=self.worker)
        except Exception as exc:
            log.error("%s: %s failed: %s", job.pipeline, job.kind, error_text(exc))
            return JobResult(
                "failed",
                error_text(exc),
                retryable=isinstance(exc, TRANSIENT),
                worker=self.worker,
            )
        return JobResult("ok", worker=self.worker, **counts)

    def _infer(self, pipeline: Pipeline, ports: Ports, job: Job) -> RunCounts:
        if job.first is None or job.last is None:
            raise ValueError(f"{job.name}: an infer job needs its window (first, last)")
        record = ports.registry.model(pipeline.name, job.model_version)
        if record is None:
            raise ValueError(
                f"model v{job.model_version} is gone (pruned by a newer train); "
                "the next cycle scores with the active model"
            )
        scored = score_window(
            pipeline,
            ports,
            self.models,
            record,
            (job.first, job.last),
            tracker=self.tracker,
            contexts=self.contexts,
            shard=(job.shard, job.shards),
        )
        return scored.counts

    def forget(self, name: str) -> list[LabelTuple]:
        """Drop a removed pipeline's caches; returns its output series (to mark stale)."""
        self.models.forget(name)
        self.contexts.forget(name)
        return self.tracker.remove(name)


def _pipeline_of(job: Job) -> Pipeline:
    pipeline = Pipeline.model_validate_json(job.definition)
    if pipeline.config_hash() != job.config_hash:
        raise ValueError(
            f"{job.name}: the pipeline definition does not match its hash "
            "(scheduler and worker run different OpenAnomaly versions?)"
        )
    return pipeline

"""Train: read `train.window` of history, clean it, fit, store the artifact, register it."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.hygiene import prepare, training_policy
from openanomaly.domain.series import SeriesFrame
from openanomaly.ports import ModelRecord, RunRecord
from openanomaly.usecases.common import Ports, RunCounts, floor_to_step

log = logging.getLogger(__name__)


def train(
    pipeline: Pipeline,
    ports: Ports,
    *,
    keep_models: int = 3,
    scheduled: datetime | None = None,
) -> RunRecord:
    """One train run, recorded in the registry whatever happens; returns the finished run.

    The new model becomes active only after its artifact is durably stored, so a crash at any
    point leaves the previous model active and no registered model without its artifact."""
    started = ports.clock()
    run = ports.registry.start_run(RunRecord(pipeline.name, "train", scheduled or started, started))
    try:
        counts = train_model(pipeline, ports, keep_models=keep_models, until=started)
        run = replace(run, status="ok", finished=ports.clock(), **counts)
    except Exception as exc:
        log.error("%s: train failed: %s: %s", pipeline.name, type(exc).__name__, exc)
        run = replace(run, status="failed", finished=ports.clock(), error=error_text(exc))
    ports.registry.finish_run(run)
    return run


def train_model(
    pipeline: Pipeline, ports: Ports, *, keep_models: int, until: datetime
) -> RunCounts:
    """Read the window that ends at `until` (minus the query delay), clean, fit, store and
    register; returns the run's series counts. Raises on failure; recording the run is the
    caller's (`train`, or the scheduler in cluster mode). A job passes its scheduled time as
    `until`, so a redelivered train fits the same data."""
    started = ports.clock()
    end = floor_to_step(until - ports.query_delay, pipeline.step)
    start = end - pipeline.train.window
    frame = ports.reader.query_range(
        pipeline.query, start, end, pipeline.step, max_series=pipeline.limits.max_series
    )
    prepared = prepare(frame.data, pipeline.step, training_policy(pipeline.step))
    if prepared.frame.empty:
        raise ValueError(
            f"nothing to train on: the query returned {len(frame.labels)} series with "
            f"no usable points between {start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M}Z"
        )
    engine = ports.engine_for(pipeline.model.engine)
    t0 = time.perf_counter()
    fitted = engine.fit(
        SeriesFrame(prepared.frame, frame.labels, prepared.filled),
        pipeline.model,
        pipeline.step,
    )
    fit_seconds = time.perf_counter() - t0
    blob = engine.dumps(fitted)
    series = int(prepared.frame["unique_id"].nunique())
    key = f"{pipeline.name}/{started:%Y%m%dT%H%M%S}-{pipeline.config_hash()[:12]}.bin"
    artifact = ports.artifacts.put(key, blob)
    record = ports.registry.add_model(
        ModelRecord(
            pipeline=pipeline.name,
            version=0,  # assigned by the registry
            config_hash=pipeline.config_hash(),
            engine=pipeline.model.engine,
            artifact=artifact,
            created=ports.clock(),
            series_count=series,
            train_start=start,
            train_end=end,
            fit_seconds=fit_seconds,
        )
    )
    _prune(pipeline.name, ports, keep_models)
    for uid, reason in list(prepared.skipped.items())[:5]:
        log.info("%s: series %s not trained: %s", pipeline.name, uid, reason)
    log.info(
        "%s: trained model v%d on %d series (%d skipped) in %.1fs, artifact %d bytes",
        pipeline.name,
        record.version,
        series,
        len(prepared.skipped),
        fit_seconds,
        artifact.size,
    )
    return {
        "series_in": len(frame.labels),
        "series_scored": series,
        "series_skipped": len(prepared.skipped),
    }


def _prune(pipeline: str, ports: Ports, keep: int) -> None:
    """Delete artifacts of retired versions beyond the newest `keep`; the registry row goes
    after the file, so a crash between the two leaves a row to retry, never a dangling file."""
    for old in ports.registry.retired_models(pipeline, keep):
        try:
            ports.artifacts.delete(old.artifact.uri)
            ports.registry.delete_model(pipeline, old.version)
        except Exception as exc:  # pruning is housekeeping: never fail a train over it
            log.warning("%s: could not delete model v%d: %s", pipeline, old.version, exc)


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 2000 else text[:1997] + "..."

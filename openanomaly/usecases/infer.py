"""Infer: score every point after the watermark with the active model and write the results.

Points are scored from `watermark + step` up to `now - query_delay` (floored to the step
grid), at most `infer.max_catchup` back. The watermark moves only after the writer has
accepted the samples or put them in its outbox, so a crash re-scores a window rather than
losing it; re-scoring writes identical samples (same model, same context), which the TSDB
deduplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.outputs import build_outputs
from openanomaly.domain.staleness import SeriesTracker
from openanomaly.ports import ModelRecord, RunRecord
from openanomaly.usecases.common import (
    ModelCache,
    NeedsRetrain,
    Ports,
    RunCounts,
    floor_to_step,
)
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.scoring import Stopwatch, read_start, score_points
from openanomaly.usecases.train import error_text

log = logging.getLogger(__name__)


class WriteRefused(Exception):
    """The TSDB refused samples for good; the run fails without moving the watermark."""


@dataclass
class InferOutcome:
    run: RunRecord
    needs_retrain: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase


def infer(
    pipeline: Pipeline,
    ports: Ports,
    models: ModelCache,
    *,
    tracker: SeriesTracker | None = None,
    contexts: ContextCache | None = None,
    scheduled: datetime | None = None,
) -> InferOutcome:
    """One infer run over the whole pipeline in this process (light mode, `openanomaly
    infer`); recorded in the registry whatever happens."""
    started = ports.clock()
    run = ports.registry.start_run(RunRecord(pipeline.name, "infer", scheduled or started, started))
    outcome = InferOutcome(run)
    try:
        record = ports.registry.active_model(pipeline.name)
        if record is None:
            raise NeedsRetrain("no trained model yet")
        watermark = ports.registry.watermark(pipeline.name)
        first, last = scoring_window(pipeline, run.started, ports.query_delay, watermark)
        if first <= last:
            scored = score_window(
                pipeline,
                ports,
                models,
                record,
                (first, last),
                tracker=tracker,
                contexts=contexts,
                timings=outcome.timings,
            )
            # Accepted or durably queued: from here on the outbox owns delivery.
            ports.registry.set_watermark(pipeline.name, last)
            outcome.skipped = scored.skipped
            run = replace(run, **scored.counts)
        run = replace(run, status="ok", finished=ports.clock())
    except NeedsRetrain as exc:
        log.error("%s: %s; retraining", pipeline.name, exc)
        outcome.needs_retrain = True
        run = replace(run, status="failed", finished=ports.clock(), error=error_text(exc))
    except Exception as exc:
        log.error("%s: infer failed: %s: %s", pipeline.name, type(exc).__name__, exc)
        run = replace(run, status="failed", finished=ports.clock(), error=error_text(exc))
    ports.registry.finish_run(run)
    outcome.run = run
    return outcome


def scoring_window(
    pipeline: Pipeline, now: datetime, delay: timedelta, watermark: datetime | None
) -> tuple[datetime, datetime]:
    """(first, last) timestamps to score; first > last when there is nothing new. A pipeline
    never scored before starts `infer.max_catchup` back, so its dashboards fill at once."""
    step = pipeline.step
    last = floor_to_step(now - delay, step)
    oldest = floor_to_step(last - pipeline.infer.max_catchup, step) + step
    if watermark is None:
        return oldest, last
    return max(watermark + step, oldest), last


@dataclass
class Scored:
    counts: RunCounts
    skipped: dict[str, str]


def score_window(
    pipeline: Pipeline,
    ports: Ports,
    models: ModelCache,
    record: ModelRecord,
    window: tuple[datetime, datetime],
    *,
    tracker: SeriesTracker | None = None,
    contexts: ContextCache | None = None,
    shard: tuple[int, int] = (0, 1),
    timings: dict[str, float] | None = None,
) -> Scored:
    """Score [first, last] with model `record` (of shard k of n series) and write the results;
    the watermark is the caller's. Idempotent: the same window, model and context give the
    same samples, so a redelivered job rewrites identical values."""
    first, last = window
    timings = {} if timings is None else timings
    model = models.get(record, ports)
    at = pd.date_range(first, last, freq=pipeline.step)
    start = read_start(pipeline, at)
    clock = Stopwatch(timings)
    # Without a cache kept between runs, a throwaway one still reads and slices shards.
    reads = contexts if contexts is not None else ContextCache()
    frame = reads.read(ports.reader, pipeline, record.version, start, last, shard=shard)
    clock.lap("read")
    engine = ports.engine_for(record.engine)
    scored, skipped = score_points(pipeline, engine, model, frame, at=at, timings=timings)
    clock = Stopwatch(timings)
    own = {"pipeline": pipeline.name, "model": pipeline.model.name, **pipeline.output.labels}
    cache = contexts.output_labels(pipeline) if contexts is not None else None
    series = build_outputs(scored, frame.labels, pipeline.output.prefix, own, cache)
    clock.lap("score")
    result = ports.writer.write(series)
    clock.lap("write")
    if result.dropped:
        # Refused for good (a 4xx: wrong URL, auth, receiver off): fail the run and keep the
        # watermark, so these points are scored again (within max_catchup) once it is fixed.
        raise WriteRefused(
            f"the TSDB refused {result.dropped} of {result.dropped + result.accepted} samples: "
            + "; ".join(dict.fromkeys(result.errors[:3]))
        )
    if tracker is not None:
        key = pipeline.name if shard[1] <= 1 else f"{pipeline.name}#{shard[0]}/{shard[1]}"
        gone = tracker.update(key, [s.labels for s in series])
        if gone:
            ports.writer.mark_stale(gone, int(last.timestamp() * 1000) + 1)
    scored_series = int(scored["unique_id"].nunique()) if len(scored) else 0
    log.info(
        "%s%s: scored %d series at %d point(s), %d samples written (%s)",
        pipeline.name,
        "" if shard[1] <= 1 else f" shard {shard[0]}/{shard[1]}",
        scored_series,
        len(at),
        result.accepted + result.queued,
        ", ".join(f"{k} {v:.2f}s" for k, v in timings.items()),
    )
    if skipped:
        log.info(
            "%s: %d series not scored, e.g. %s",
            pipeline.name,
            len(skipped),
            "; ".join(f"{u}: {r}" for u, r in list(skipped.items())[:3]),
        )
    counts: RunCounts = {
        "series_in": len(frame.labels),
        "series_scored": scored_series,
        "series_skipped": len(skipped),
        "samples_written": result.accepted + result.queued,
    }
    return Scored(counts, skipped)

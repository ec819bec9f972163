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
from openanomaly.ports import RunRecord
from openanomaly.usecases.common import ModelCache, NeedsRetrain, Ports, floor_to_step
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.scoring import Stopwatch, read_start, score_points
from openanomaly.usecases.train import _error_text

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
    started = ports.clock()
    run = ports.registry.start_run(RunRecord(pipeline.name, "infer", scheduled or started, started))
    outcome = InferOutcome(run)
    try:
        run = _infer(
            pipeline, ports, models, tracker=tracker, contexts=contexts, run=run, outcome=outcome
        )
        run = replace(run, status="ok", finished=ports.clock())
    except NeedsRetrain as exc:
        log.error("%s: %s; retraining", pipeline.name, exc)
        outcome.needs_retrain = True
        run = replace(run, status="failed", finished=ports.clock(), error=_error_text(exc))
    except Exception as exc:
        log.error("%s: infer failed: %s: %s", pipeline.name, type(exc).__name__, exc)
        run = replace(run, status="failed", finished=ports.clock(), error=_error_text(exc))
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


def _infer(
    pipeline: Pipeline,
    ports: Ports,
    models: ModelCache,
    *,
    tracker: SeriesTracker | None,
    contexts: ContextCache | None,
    run: RunRecord,
    outcome: InferOutcome,
) -> RunRecord:
    record = ports.registry.active_model(pipeline.name)
    if record is None:
        raise NeedsRetrain("no trained model yet")
    model = models.get(record, ports)
    first, last = scoring_window(
        pipeline, run.started, ports.query_delay, ports.registry.watermark(pipeline.name)
    )
    if first > last:
        return run
    at = pd.date_range(first, last, freq=pipeline.step)
    start = read_start(pipeline, at)
    clock = Stopwatch(outcome.timings)
    if contexts is not None:
        frame = contexts.read(ports.reader, pipeline, record.version, start, last)
    else:
        frame = ports.reader.query_range(
            pipeline.query, start, last, pipeline.step, max_series=pipeline.limits.max_series
        )
    clock.lap("read")
    engine = ports.engine_for(record.engine)
    scored, skipped = score_points(pipeline, engine, model, frame, at=at, timings=outcome.timings)
    clock = Stopwatch(outcome.timings)
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
        gone = tracker.update(pipeline.name, [s.labels for s in series])
        if gone:
            ports.writer.mark_stale(gone, int(last.timestamp() * 1000) + 1)
    # Accepted or durably queued: from here on the outbox owns delivery.
    ports.registry.set_watermark(pipeline.name, last)
    scored_series = int(scored["unique_id"].nunique()) if len(scored) else 0
    log.info(
        "%s: scored %d series at %d point(s), %d samples written (%s)",
        pipeline.name,
        scored_series,
        len(at),
        result.accepted + result.queued,
        ", ".join(f"{k} {v:.2f}s" for k, v in outcome.timings.items()),
    )
    outcome.skipped = skipped
    if skipped:
        log.info(
            "%s: %d series not scored, e.g. %s",
            pipeline.name,
            len(skipped),
            "; ".join(f"{u}: {r}" for u, r in list(skipped.items())[:3]),
        )
    return replace(
        run,
        series_in=len(frame.labels),
        series_scored=scored_series,
        series_skipped=len(skipped),
        samples_written=result.accepted + result.queued,
    )

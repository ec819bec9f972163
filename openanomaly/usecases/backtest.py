"""Backtest: replay a pipeline's schedule over history, without look-ahead.

The model is refitted every `train.every` (1 day for cron schedules) on the `train.window`
before the refit time, as the daemon would have done, and every point until the next refit is
scored from the context before it, exactly as infer scores it (same hygiene, same context
starts, same engine call). Scores from a backtest and from the live daemon over the same data
and model therefore agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.hygiene import prepare, training_policy
from openanomaly.domain.series import SeriesFrame
from openanomaly.durations import format_duration
from openanomaly.ports import MetricsReader, ModelEngine
from openanomaly.usecases.common import floor_to_step
from openanomaly.usecases.scoring import read_start, score_points

COLUMNS = ["unique_id", "ds", "y", "yhat", "yhat_lower", "yhat_upper", "score"]


@dataclass
class BacktestResult:
    scored: pd.DataFrame  # COLUMNS
    labels: dict[str, dict[str, str]]
    fits: int = 0
    skipped: dict[str, str] = field(default_factory=dict)


def backtest(
    pipeline: Pipeline,
    reader: MetricsReader,
    engine: ModelEngine,
    start: datetime,
    end: datetime,
    *,
    progress: Callable[[int, int], None] | None = None,
    max_series: int | None = None,
) -> BacktestResult:
    """Score every step from `start` to `end` (both inclusive, on the step grid). The read
    refuses more than `max_series` series (default: the pipeline's limits.max_series)."""
    step = pipeline.step
    first = floor_to_step(start - step, step) + step
    last = floor_to_step(end, step)
    if first > last:
        raise ValueError(
            f"no {format_duration(step)} step from {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M}"
        )
    every = pipeline.train.every or timedelta(days=1)
    refits = list(pd.date_range(first - step, last - step, freq=every))
    # pandas compares its DatetimeIndex with datetimes; typed as Timestamps for mypy
    last_ts = pd.Timestamp(last)
    at_all = pd.date_range(first, last, freq=step)
    earliest = min(refits[0] - pipeline.train.window, read_start(pipeline, at_all))
    frame = reader.query_range(
        pipeline.query, earliest, last, step, max_series=max_series or pipeline.limits.max_series
    )
    result = BacktestResult(pd.DataFrame(columns=COLUMNS), frame.labels)
    parts = []
    for index, fit_end in enumerate(refits):
        upto = min(fit_end + every, last_ts)
        at = at_all[(at_all > fit_end) & (at_all <= upto)]
        history = frame.data[
            (frame.data["ds"] >= fit_end - pipeline.train.window) & (frame.data["ds"] <= fit_end)
        ]
        train = prepare(history.reset_index(drop=True), step, training_policy(step))
        if progress is not None:
            progress(index, len(refits))
        if train.frame.empty or not len(at):
            continue
        model = engine.fit(
            SeriesFrame(train.frame, frame.labels, train.filled), pipeline.model, step
        )
        result.fits += 1
        part, why = score_points(pipeline, engine, model, frame, at=at)
        result.skipped.update(why)
        parts.append(part)
    if progress is not None:
        progress(len(refits), len(refits))
    if parts:
        scored = pd.concat(parts, ignore_index=True)
        result.scored = (
            scored[COLUMNS].sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
        )
    return result

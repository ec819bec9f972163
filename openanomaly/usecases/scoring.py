"""Score one context window: shared by infer and backtest, so both give the same numbers."""

from __future__ import annotations

import itertools
import time
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.hygiene import HygienePolicy, prepare
from openanomaly.domain.ranges import RANGE_COLUMNS
from openanomaly.domain.scoring import anomaly_score, hold_off
from openanomaly.domain.series import SeriesFrame, utc_times
from openanomaly.ports import ModelEngine

SERIES_PER_BATCH = 1000
"""Series scored together: hygiene, the engine and scoring hold a batch's copies at a time,
not the whole context's (which at 10,000 series x 1 day at 1m is 14 M points)."""


def series_batches(data: pd.DataFrame, size: int) -> list[slice]:
    """Row ranges of `size` whole series each (the frame is sorted by unique_id)."""
    ids = data["unique_id"].to_numpy()
    if not len(ids):
        return [slice(0, 0)]
    run_starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    cuts = [*run_starts[::size].tolist(), len(ids)]
    return [slice(a, b) for a, b in itertools.pairwise(cuts)]


def context_starts(pipeline: Pipeline, at: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Where the context for scoring each time in `at` starts: `infer.context` before it,
    floored to a grid of an eighth of the context. The start is a function of the time alone,
    not of the run, so scoring a point again (a retry, a catch-up after a crash) reads the
    same context and writes the same values; Prometheus refuses a second, different value
    at a timestamp. Contexts are between 1 and 1.125 times `infer.context` long."""
    step = pipeline.step
    grid = max(step, (pipeline.infer.context // 8) // step * step)
    grid_ns = grid // timedelta(microseconds=1) * 1000
    earliest = (at - pipeline.infer.context).asi8
    return pd.DatetimeIndex(earliest - earliest % grid_ns, tz="UTC")


def read_start(pipeline: Pipeline, at: pd.DatetimeIndex) -> pd.Timestamp:
    """The earliest point scoring `at` needs: the context of the first point, or, with a
    hold-off, the context of the first point the hold-off looks back at."""
    first = pd.DatetimeIndex([at.min() - effective_holdoff(pipeline)])
    return pd.Timestamp(context_starts(pipeline, first)[0])


def score_points(
    pipeline: Pipeline,
    engine: ModelEngine,
    model: Any,
    frame: SeriesFrame,
    *,
    at: pd.DatetimeIndex,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Bands and scores at every time in `at` (consecutive steps) from `frame` (raw points
    from `read_start` on), in batches of whole series and, within a batch, one window per
    context start. Infer and backtest both score through here."""
    scored, skipped = _score_all(pipeline, engine, model, frame, at=at, timings=timings)
    over = np.nan_to_num(scored["score"].to_numpy(dtype=np.float64)) > 1
    if effective_holdoff(pipeline) and over.any():
        clock = Stopwatch(timings)
        scored = _held(pipeline, engine, model, frame, scored=scored, at=at)
        clock.lap("score")
    return scored, skipped


def _score_all(
    pipeline: Pipeline,
    engine: ModelEngine,
    model: Any,
    frame: SeriesFrame,
    *,
    at: pd.DatetimeIndex,
    timings: dict[str, float] | None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    starts = context_starts(pipeline, at)
    parts, skipped = [], {}
    for rows in series_batches(frame.data, SERIES_PER_BATCH):
        batch = frame.data.iloc[rows]
        batch.index = pd.RangeIndex(len(batch))  # a view with its own index: no copy later
        for start in np.unique(starts):
            targets = at[starts == start]
            inside = batch["ds"].between(start, targets[-1]).to_numpy()
            raw = batch if inside.all() else batch[inside]  # the cache holds just this, usually
            part, why = score_window(
                pipeline, engine, model, raw, labels=frame.labels, targets=targets, timings=timings
            )
            parts.append(part)
            skipped.update(why)
    return (pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]), skipped


def score_window(
    pipeline: Pipeline,
    engine: ModelEngine,
    model: Any,
    raw: pd.DataFrame,
    *,
    labels: dict[str, dict[str, str]],
    targets: pd.DatetimeIndex,
    timings: dict[str, float] | None = None,
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Bands and scores at `targets` from `raw` (the TSDB's points from the context start to
    the last target). Hygiene runs on exactly this window, so a point's forecast depends on
    the window alone. Scores are computed against observed values only: a point hygiene
    filled in gets a forecast but no score (nothing was observed there)."""
    clock = Stopwatch(timings)
    clean = prepare(raw, pipeline.step, HygienePolicy())
    clock.lap("prepare")
    if clean.frame.empty:  # no point in the context at all (a long outage): nothing to score
        return _no_scores(), clean.skipped
    bands = engine.predict(
        model, SeriesFrame(clean.frame, labels), list(targets), pipeline.model.level
    )
    clock.lap("model")
    skipped = {**clean.skipped, **bands.attrs.get("skipped", {})}
    if bands.empty:  # nothing to score in this window (an outage, no series): not an error
        return _no_scores(), skipped
    scored = _scored(pipeline, bands, raw, targets)
    clock.lap("score")
    return scored, skipped


def effective_holdoff(pipeline: Pipeline) -> timedelta:
    """`scoring.holdoff`, the default cut to `infer.context` (validation refuses a longer one
    that the user wrote): the points it looks back at must be in the context."""
    return min(pipeline.scoring.holdoff, pipeline.infer.context)


def _scored(
    pipeline: Pipeline, bands: pd.DataFrame, raw: pd.DataFrame, targets: pd.DatetimeIndex
) -> pd.DataFrame:
    scale = pipeline.model.scale
    if scale != 1:  # the written band is the scaled one: the band users see is what alerts
        yhat = bands["yhat"].to_numpy(dtype=np.float64)
        bands = bands.assign(
            yhat_lower=yhat - scale * (yhat - bands["yhat_lower"].to_numpy(dtype=np.float64)),
            yhat_upper=yhat + scale * (bands["yhat_upper"].to_numpy(dtype=np.float64) - yhat),
        )
    observed = _observed(raw, pipeline.step, targets)
    scored = bands.merge(observed, on=["unique_id", "ds"], how="left")
    s = pipeline.scoring
    ranges = {c: scored[c].to_numpy(dtype=np.float64) for c in RANGE_COLUMNS if c in scored}
    scored["score"] = anomaly_score(
        scored["y"].to_numpy(dtype=np.float64),
        scored["yhat"].to_numpy(dtype=np.float64),
        scored["yhat_lower"].to_numpy(dtype=np.float64),
        scored["yhat_upper"].to_numpy(dtype=np.float64),
        direction=s.direction,
        min_dev=s.min_dev,
        min_rel_dev=s.min_rel_dev,
        train_min=ranges.get("train_min"),
        train_max=ranges.get("train_max"),
        outside_range=s.outside_range,
    )
    return scored.drop(columns=[c for c in RANGE_COLUMNS if c in scored])


def _held(
    pipeline: Pipeline,
    engine: ModelEngine,
    model: Any,
    frame: SeriesFrame,
    *,
    scored: pd.DataFrame,
    at: pd.DatetimeIndex,
) -> pd.DataFrame:
    """`scoring.holdoff` applied. Only series with a point over 1 can change, so only those
    are scored again over the hold-off before `at` (a tiny share of the series: the rest cost
    nothing), each of those points exactly as it was scored as a target itself (its own
    context), so a point's held score does not depend on which run scored it."""
    step, holdoff = pipeline.step, effective_holdoff(pipeline)
    hot = pd.unique(scored.loc[scored["score"] > 1, "unique_id"])
    earlier = pd.date_range(at[0] - holdoff + step, at[0] - step, freq=step)
    parts = [scored]
    sub = frame.data[frame.data["unique_id"].isin(hot)]
    if len(earlier) and len(sub):
        sub = sub.reset_index(drop=True)
        again = SeriesFrame(sub, frame.labels)
        before, _ = _score_all(pipeline, engine, model, again, at=earlier, timings=None)
        parts.insert(0, before)
    both = pd.concat(parts, ignore_index=True) if len(parts) > 1 else scored
    both = both.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    held = hold_off(
        both["unique_id"].to_numpy(dtype=object),
        both["ds"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
        both["score"].to_numpy(dtype=np.float64),
        int(holdoff.total_seconds() * 1e9),
    )
    lookup = pd.Series(held, index=pd.MultiIndex.from_frame(both[["unique_id", "ds"]]))
    key = pd.MultiIndex.from_frame(scored[["unique_id", "ds"]])
    return scored.assign(score=lookup.reindex(key).to_numpy(dtype=np.float64))


class Stopwatch:
    """Adds the time since the last lap to `timings[name]` (phases of an infer run, for the
    run's log line and the benchmark); does nothing without a dict."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = self.timings.get(name, 0.0) + now - self.last
        self.last = now


def _observed(raw: pd.DataFrame, step: timedelta, targets: pd.DatetimeIndex) -> pd.DataFrame:
    """Finite observed values at `targets` on the step grid (several in one step averaged,
    as hygiene does)."""
    step_ns = int(step.total_seconds() * 1e9)
    ns_all = raw["ds"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    wanted = np.isin(ns_all - ns_all % step_ns, targets.asi8)
    finite = raw[wanted & np.isfinite(raw["y"].to_numpy(dtype=np.float64))]
    ns = ns_all[wanted & np.isfinite(raw["y"].to_numpy(dtype=np.float64))]
    slot = utc_times(ns - ns % step_ns)
    observed: pd.DataFrame = (
        pd.DataFrame({"unique_id": finite["unique_id"].to_numpy(), "ds": slot, "y": finite["y"]})
        .groupby(["unique_id", "ds"], sort=False)["y"]
        .mean()
        .reset_index()
    )
    return observed


def _no_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": pd.Series(dtype=object),
            "ds": pd.Series(dtype="datetime64[ns, UTC]"),
            **{
                c: pd.Series(dtype=np.float64)
                for c in ("yhat", "yhat_lower", "yhat_upper", "y", "score")
            },
        }
    )

"""The anomaly score: how far a point is from its forecast, in units of the band's half-width.

Compatible with vmanomaly's convention, so alert rules carry over: 0 at the forecast `yhat`,
1 at the band edge, above 1 outside, linear in between on each side (each side uses its own
half-width, so asymmetric bands work):

    y >= yhat:  (y - yhat) / (yhat_upper - yhat)
    y <  yhat:  (yhat - y) / (yhat - yhat_lower)

Then `direction` zeroes the side the user does not care about, and deviations under `min_dev`
(absolute) or under `min_rel_dev * |yhat|` (relative) score 0. A side whose half-width is zero or
negative (a degenerate band) scores 0 when y equals yhat and MAX_SCORE otherwise; every score is
capped at MAX_SCORE, so an infinite input still gives a finite, alertable number. If y, yhat or the
bound that applies is NaN, the score is NaN: no sample is written for it (never a fake 0).

Two refinements, both measured on the Numenta Anomaly Benchmark (`benchmarks/nab/`):

- `outside_range` (a fraction r of the training range R = max - min): a value beyond the
  training range scores at least its distance past the range over r x R, so a level never seen
  in the whole training window scores over 1 once it is r x R past it, even when a fast
  one-step forecast has already followed it. The larger of the two scores is kept.
- `hold_off`: after a point scores over 1, the next points of that series within the hold-off
  score at most 1. An incident alerts once, on its first point, instead of on every point
  while the forecast catches up (NAB counts each of those as a false positive; so does an
  on-call engineer).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
Direction = Literal["both", "above", "below"]

MAX_SCORE = 1e6
"""Scores are capped here: far outside any band people alert on, and finite for every TSDB."""


def anomaly_score(
    y: F64,
    yhat: F64,
    lower: F64,
    upper: F64,
    *,
    direction: Direction = "both",
    min_dev: float = 0.0,
    min_rel_dev: float = 0.0,
    train_min: F64 | None = None,
    train_max: F64 | None = None,
    outside_range: float = 0.0,
) -> F64:
    """Element-wise score; all arrays broadcast together."""
    y, yhat, lower, upper = (np.asarray(a, dtype=np.float64) for a in (y, yhat, lower, upper))
    above = y >= yhat
    deviation = np.abs(y - yhat)
    width = np.where(above, upper - yhat, yhat - lower)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # capped below
        scaled = deviation / width
    degenerate = ~(width > 0)  # zero, negative or NaN half-width
    score = np.where(degenerate, np.where(deviation == 0, 0.0, MAX_SCORE), scaled)
    if direction == "above":
        score = np.where(above, score, 0.0)
    elif direction == "below":
        score = np.where(above & (y > yhat), 0.0, score)
    if outside_range > 0 and train_min is not None and train_max is not None:
        high = np.asarray(train_max, dtype=np.float64)
        past = range_score(y, train_min, high, outside_range)
        if direction != "both":  # only the side the user cares about
            past = np.where((y > high) == (direction == "above"), past, 0.0)
        score = np.fmax(score, past)
    small = (deviation < min_dev) | (deviation < min_rel_dev * np.abs(yhat))
    score = np.where(small, 0.0, score)
    score = np.minimum(score, MAX_SCORE)
    bound = np.where(above, upper, lower)
    unknown = np.isnan(y) | np.isnan(yhat) | np.isnan(bound)
    result: F64 = np.where(unknown, np.nan, score)
    return result


def range_score(y: F64, low: F64, high: F64, fraction: float) -> F64:
    """How far y is outside [low, high], in units of `fraction` x (high - low); 0 inside,
    NaN where the range is unknown. A constant training series (high == low) has no scale:
    any value off it scores MAX_SCORE, as a degenerate band does."""
    y, low, high = (np.asarray(a, dtype=np.float64) for a in (y, low, high))
    past = np.fmax(y - high, low - y)
    unit = fraction * (high - low)
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(unit > 0, past / unit, np.where(past > 0, MAX_SCORE, 0.0))
    result: F64 = np.where(past > 0, np.minimum(scaled, MAX_SCORE), 0.0)
    return np.where(np.isnan(low) | np.isnan(high), np.nan, result)


def hold_off(
    series: npt.NDArray[np.object_], times_ns: npt.NDArray[np.int64], score: F64, holdoff_ns: int
) -> F64:
    """Scores with each point capped at 1 when an earlier point of its series within
    `holdoff_ns` (exclusive) scored over 1. Input sorted by series, then time. The raw scores
    decide, not the capped ones, so the result depends only on the points in the hold-off
    window before each point: re-scoring a point gives the same value."""
    over = np.nan_to_num(score, nan=0.0) > 1
    out = score.copy()
    if not over.any() or holdoff_ns <= 0:
        return out
    starts = np.flatnonzero(np.r_[True, series[1:] != series[:-1]])
    ends = np.r_[starts[1:], len(series)]
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        hits = times_ns[a:b][over[a:b]]
        if not len(hits):
            continue
        t = times_ns[a:b]
        # the latest exceedance strictly before each point
        before = np.searchsorted(hits, t, side="left") - 1
        recent = (before >= 0) & (t - hits[np.maximum(before, 0)] < holdoff_ns)
        out[a:b] = np.where(recent, np.minimum(score[a:b], 1.0), score[a:b])  # NaN stays NaN
    return out

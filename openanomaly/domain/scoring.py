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
    small = (deviation < min_dev) | (deviation < min_rel_dev * np.abs(yhat))
    score = np.where(small, 0.0, score)
    score = np.minimum(score, MAX_SCORE)
    bound = np.where(above, upper, lower)
    unknown = np.isnan(y) | np.isnan(yhat) | np.isnan(bound)
    result: F64 = np.where(unknown, np.nan, score)
    return result

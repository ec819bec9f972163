"""The anomaly score, to the formula."""

from __future__ import annotations

import math

import numpy as np
import pytest

from openanomaly.domain.scoring import MAX_SCORE, anomaly_score

NAN, INF = float("nan"), float("inf")

# (y, yhat, lower, upper, options, expected)
CASES = [
    (10.0, 10.0, 8.0, 12.0, {}, 0.0),  # at the forecast
    (12.0, 10.0, 8.0, 12.0, {}, 1.0),  # at the upper edge
    (8.0, 10.0, 8.0, 12.0, {}, 1.0),  # at the lower edge
    (11.0, 10.0, 8.0, 12.0, {}, 0.5),  # linear inside
    (16.0, 10.0, 8.0, 12.0, {}, 3.0),  # outside above
    (4.0, 10.0, 8.0, 12.0, {}, 3.0),  # outside below
    (11.0, 10.0, 9.0, 14.0, {}, 0.25),  # asymmetric band: the upper half-width is 4
    (9.5, 10.0, 9.0, 14.0, {}, 0.5),  # ... the lower one is 1
    (16.0, 10.0, 8.0, 12.0, {"direction": "above"}, 3.0),
    (4.0, 10.0, 8.0, 12.0, {"direction": "above"}, 0.0),
    (16.0, 10.0, 8.0, 12.0, {"direction": "below"}, 0.0),
    (4.0, 10.0, 8.0, 12.0, {"direction": "below"}, 3.0),
    (10.0, 10.0, 8.0, 12.0, {"direction": "below"}, 0.0),
    (16.0, 10.0, 8.0, 12.0, {"min_dev": 6.5}, 0.0),  # deviation 6 < 6.5
    (16.0, 10.0, 8.0, 12.0, {"min_dev": 6.0}, 3.0),  # not strictly below: scored
    (16.0, 10.0, 8.0, 12.0, {"min_rel_dev": 0.7}, 0.0),  # 6 < 0.7 * 10
    (16.0, 10.0, 8.0, 12.0, {"min_rel_dev": 0.5}, 3.0),  # 6 >= 5
    (-16.0, -10.0, -12.0, -8.0, {"min_rel_dev": 0.7}, 0.0),  # relative to |yhat|
    (10.0, 10.0, 10.0, 10.0, {}, 0.0),  # zero-width band, y at the forecast
    (10.1, 10.0, 10.0, 10.0, {}, MAX_SCORE),  # zero-width band, y off it
    (9.9, 10.0, 10.0, 10.0, {}, MAX_SCORE),
    (11.0, 10.0, 8.0, 9.0, {}, MAX_SCORE),  # upper bound below yhat: degenerate side
    (INF, 10.0, 8.0, 12.0, {}, MAX_SCORE),  # capped, finite
    (-INF, 10.0, 8.0, 12.0, {}, MAX_SCORE),
    (1e300, 0.0, -1.0, 1e-300, {}, MAX_SCORE),
    (NAN, 10.0, 8.0, 12.0, {}, NAN),  # no data: no score
    (10.0, NAN, 8.0, 12.0, {}, NAN),  # no forecast: no score
    (16.0, 10.0, 8.0, NAN, {}, NAN),  # the bound that applies is unknown
    (4.0, 10.0, 8.0, NAN, {}, 3.0),  # ... the other one does not matter
]


@pytest.mark.parametrize("case", CASES)
def test_score(case: tuple[float, float, float, float, dict[str, object], float]) -> None:
    y, yhat, lower, upper, options, expected = case
    got = float(
        anomaly_score(
            np.array([y]), np.array([yhat]), np.array([lower]), np.array([upper]), **options
        )[0]
    )  # type: ignore[arg-type]
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(expected, rel=1e-12)


def test_vectorised_and_broadcast() -> None:
    y = np.array([10.0, 12.0, 16.0, NAN])
    score = anomaly_score(y, np.array(10.0), np.array(8.0), np.array(12.0))
    np.testing.assert_array_equal(score, [0.0, 1.0, 3.0, NAN])


def test_outside_range_scores_distance_past_the_training_range() -> None:
    from openanomaly.domain.scoring import range_score

    y = np.array([5.0, 10.5, 12.0, -1.0, 3.0, NAN])
    low, high = np.zeros(6), np.full(6, 10.0)
    np.testing.assert_allclose(range_score(y, low, high, 0.1), [0, 0.5, 2, 1, 0, 0])
    flat = range_score(np.array([4.0, 4.5]), np.full(2, 4.0), np.full(2, 4.0), 0.1)
    assert list(flat) == [0.0, MAX_SCORE]  # a constant training series: any change is news
    assert math.isnan(range_score(np.array([1.0]), np.array([NAN]), np.array([NAN]), 0.1)[0])


def test_the_larger_of_band_and_range_scores_wins_and_direction_applies_to_both() -> None:
    y, yhat = np.array([12.0, -2.0, 5.0]), np.array([11.5, -1.5, 5.0])
    lower, upper = yhat - 2, yhat + 2
    ranges = {"train_min": np.zeros(3), "train_max": np.full(3, 10.0), "outside_range": 0.1}
    assert list(anomaly_score(y, yhat, lower, upper)) == [0.25, 0.25, 0.0]
    assert list(anomaly_score(y, yhat, lower, upper, **ranges)) == [2.0, 2.0, 0.0]
    above = anomaly_score(y, yhat, lower, upper, direction="above", **ranges)
    assert list(above) == [2.0, 0.0, 0.0]
    below = anomaly_score(y, yhat, lower, upper, direction="below", **ranges)
    assert list(below) == [0.0, 2.0, 0.0]
    off = anomaly_score(y, yhat, lower, upper, **{**ranges, "outside_range": 0.0})
    assert list(off) == [0.25, 0.25, 0.0]


def test_hold_off_caps_points_after_an_exceedance_per_series() -> None:
    from openanomaly.domain.scoring import hold_off

    series = np.array(["a"] * 6 + ["b"] * 2, dtype=object)
    times = np.array([0, 10, 20, 30, 40, 50, 0, 10], dtype=np.int64)
    score = np.array([2.0, 3.0, 0.5, 0.1, 5.0, NAN, 3.0, 4.0])
    held = hold_off(series, times, score, 25)
    # 10 follows 0 (within 25): capped; 40 is 30 after the last raw exceedance (10): free;
    # series b is held by its own first point, never by series a's.
    np.testing.assert_array_equal(held, [2.0, 1.0, 0.5, 0.1, 5.0, NAN, 3.0, 1.0])
    np.testing.assert_array_equal(hold_off(series, times, score, 0), score)

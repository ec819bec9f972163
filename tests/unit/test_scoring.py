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

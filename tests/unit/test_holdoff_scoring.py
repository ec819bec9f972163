"""scoring.holdoff and scoring.outside_range through the scoring use case (infer and backtest
both score through `score_points`)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.scoring import hold_off
from openanomaly.domain.series import SeriesFrame
from openanomaly.usecases.scoring import score_points

STEP = timedelta(minutes=5)
N = 288 * 4
T = pd.date_range("2026-01-01", periods=N, freq="5min", tz="UTC")
SPIKES = (N - 150, N - 144, N - 10)  # two 30 minutes apart, one 11 hours after them


def frame() -> SeriesFrame:
    rng = np.random.default_rng(3)
    y = 50 + 5 * np.sin(2 * np.pi * np.arange(N) / 288) + rng.normal(0, 0.5, N)
    for i in SPIKES:
        y[i] += 8  # far outside the band, inside the training range
    return SeriesFrame(pd.DataFrame({"unique_id": "a", "ds": T, "y": y}), {"a": {}})


def pipeline(**scoring: object) -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": "p",
            "query": "q",
            "step": "5m",
            "infer": {"context": "12h"},
            "model": {"name": "MSTL", "params": {"season_length": "1d"}, "level": 99.99},
            "scoring": {"outside_range": 0, **scoring},
        }
    )


def scores(p: Pipeline, at: pd.DatetimeIndex, one_by_one: bool = False) -> pd.Series:
    data = frame()
    engine = StatsForecastEngine()
    train = SeriesFrame(data.data.iloc[: N - 288], data.labels)
    model = engine.fit(train, p.model, STEP)
    if one_by_one:  # as the daemon scores: a point or a few per run
        parts = [score_points(p, engine, model, data, at=at[i : i + 1])[0] for i in range(len(at))]
        scored = pd.concat(parts, ignore_index=True)
    else:
        scored = score_points(p, engine, model, data, at=at)[0]
    return scored.set_index("ds")["score"]


def test_holdoff_caps_points_after_an_exceedance_and_does_not_depend_on_batching() -> None:
    wide = T[N - 270 :]  # from just after training, so the hold-off of every point is known
    free = scores(pipeline(holdoff="0s"), wide)
    assert (free[T[list(SPIKES)]] > 1).all()
    at = T[N - 160 :]
    held = scores(pipeline(holdoff="8h"), at)
    expected = hold_off(
        np.array(["a"] * len(wide), dtype=object),
        wide.asi8,
        free.to_numpy(dtype=np.float64),
        int(timedelta(hours=8).total_seconds() * 1e9),
    )
    expected_at = pd.Series(expected, index=free.index)[at]
    np.testing.assert_allclose(held.to_numpy(), expected_at.to_numpy(), rtol=1e-9)
    assert held[T[SPIKES[1]]] == 1.0  # 30 minutes after a spike: the same incident
    assert (held <= free[at] + 1e-12).all()
    assert (held < free[at]).sum() >= 1
    one_by_one = scores(pipeline(holdoff="8h"), at, one_by_one=True)
    pd.testing.assert_series_equal(one_by_one, held, check_exact=False, rtol=1e-9)


def test_a_level_never_seen_in_training_scores_over_1_with_outside_range() -> None:
    p = pipeline(holdoff="0s", outside_range=0.05)
    data = frame()
    engine = StatsForecastEngine()
    model = engine.fit(SeriesFrame(data.data.iloc[: N - 288], data.labels), p.model, STEP)
    low, high = model.ranges["a"]
    drifted = data.data.copy()
    # a slow climb to 30 % of the training range above its max: a one-step forecast follows it
    goal = high + 0.3 * (high - low)
    drifted.loc[drifted.index[-72:], "y"] += np.linspace(0, goal - drifted["y"].iloc[-1], 72)
    at = T[-1:]
    on = score_points(p, engine, model, SeriesFrame(drifted, data.labels), at=at)[0]
    off = pipeline(holdoff="0s", outside_range=0)
    plain = score_points(off, engine, model, SeriesFrame(drifted, data.labels), at=at)[0]
    assert drifted["y"].iloc[-1] > high + 0.25 * (high - low)
    assert on["score"].iloc[0] >= 6.0 - 1e-9  # 0.3 of the range past it / 0.05
    assert plain["score"].iloc[0] < on["score"].iloc[0]

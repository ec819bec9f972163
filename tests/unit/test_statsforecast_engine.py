"""StatsForecastEngine: fit, serialise, load, predict, no look-ahead, and detection sanity."""

from __future__ import annotations

import pickle
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from openanomaly.adapters.model_engine.statsforecast import (
    FittedSeries,
    StatsForecastEngine,
    library_versions,
)
from openanomaly.config.pipeline import ModelSpec
from openanomaly.domain.scoring import anomaly_score
from openanomaly.domain.series import SeriesFrame
from openanomaly.errors import IncompatibleArtifact

STEP = timedelta(hours=1)
T0 = pd.Timestamp("2026-01-01", tz="UTC")
SPEC = ModelSpec(name="AutoETS", params={"season_length": "1d"}, level=99)


def synthetic(n_series: int, n_points: int, seed: int = 0, sigma: float = 1.0) -> SeriesFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(n_points)
    frames = [
        pd.DataFrame(
            {
                "unique_id": f"s{i}",
                "ds": T0 + pd.to_timedelta(t, unit="h"),
                "y": 50 + 10 * np.sin(2 * np.pi * t / 24) + rng.normal(0, sigma, n_points) + i,
            }
        )
        for i in range(n_series)
    ]
    return SeriesFrame(pd.concat(frames, ignore_index=True))


@pytest.fixture(scope="module")
def fitted() -> tuple[StatsForecastEngine, FittedSeries, SeriesFrame]:
    engine = StatsForecastEngine()
    history = synthetic(3, 24 * 21)
    return engine, engine.fit(history, SPEC, STEP), history


def tail(frame: SeriesFrame, n: int) -> SeriesFrame:
    return SeriesFrame(frame.data.groupby("unique_id", sort=False).tail(n).reset_index(drop=True))


def test_fits_every_series_with_season_in_steps(
    fitted: tuple[StatsForecastEngine, FittedSeries, SeriesFrame],
) -> None:
    _, model, _ = fitted
    assert sorted(model.models) == ["s0", "s1", "s2"]
    assert model.params == {"season_length": 24}
    assert model.skipped == {}


def test_round_trip_through_bytes_predicts_the_same(
    fitted: tuple[StatsForecastEngine, FittedSeries, SeriesFrame],
) -> None:
    engine, model, history = fitted
    context = tail(history, 72)
    at = list(context.data["ds"].drop_duplicates().iloc[-24:])
    before = engine.predict(model, context, at, 99)
    after = engine.predict(engine.loads(engine.dumps(model)), context, at, 99)
    assert len(before) == 3 * 24
    pd.testing.assert_frame_equal(before, after)
    assert (before["yhat_lower"] < before["yhat"]).all()
    assert (before["yhat"] < before["yhat_upper"]).all()


def test_band_width_comes_from_training_not_from_the_context(
    fitted: tuple[StatsForecastEngine, FittedSeries, SeriesFrame],
) -> None:
    engine, model, history = fitted
    context = tail(history, 72)
    at = list(context.data["ds"].iloc[-3:])
    calm = engine.predict(model, context, at, 99)
    noisy = context.data.copy()
    noisy.loc[noisy.index[:40], "y"] += np.random.default_rng(5).normal(0, 50, 40)
    wild = engine.predict(model, SeriesFrame(noisy), at, 99)
    np.testing.assert_allclose(
        (calm["yhat_upper"] - calm["yhat_lower"]).to_numpy(),
        (wild["yhat_upper"] - wild["yhat_lower"]).to_numpy(),
    )
    assert model.sigma["s0"] == pytest.approx(1.0, rel=0.3)  # the noise the history was made with


def test_no_look_ahead(fitted: tuple[StatsForecastEngine, FittedSeries, SeriesFrame]) -> None:
    engine, model, history = fitted
    context = tail(history, 72)
    last = context.data["ds"].max()
    changed = context.data.copy()
    changed.loc[changed["ds"] == last, "y"] += 1000.0
    at = [last]
    base = engine.predict(model, context, at, 99)
    moved = engine.predict(model, SeriesFrame(changed), at, 99)
    pd.testing.assert_frame_equal(base, moved)  # y at t never shapes the forecast for t


def test_trimmed_models_are_small_and_forecast_identically() -> None:
    engine = StatsForecastEngine()
    history = synthetic(2, 24 * 21, seed=3)
    trimmed = engine.fit(history, SPEC, STEP)
    from statsforecast.models import AutoETS

    context = tail(history, 72)
    at = list(context.data["ds"].iloc[-5:])
    full = FittedSeries(
        trimmed.model_name,
        trimmed.params,
        trimmed.versions,
        sigma=trimmed.sigma,
        half=trimmed.half,
        ranges=trimmed.ranges,
    )
    for uid, group in history.data.groupby("unique_id"):
        full.models[str(uid)] = AutoETS(season_length=24).fit(group["y"].to_numpy())
    assert "states" in full.models["s0"].model_
    assert "states" not in trimmed.models["s0"].model_
    pd.testing.assert_frame_equal(
        engine.predict(full, context, at, 99), engine.predict(trimmed, context, at, 99)
    )
    per_series = len(pickle.dumps(trimmed.models["s0"]))
    assert per_series <= 2048, per_series
    assert len(pickle.dumps(full.models["s0"])) > 10 * per_series


def test_incompatible_artifacts_are_refused(
    fitted: tuple[StatsForecastEngine, FittedSeries, SeriesFrame],
) -> None:
    engine, model, _ = fitted
    with pytest.raises(IncompatibleArtifact):
        engine.loads(b"not a pickle")
    old = FittedSeries(
        model.model_name, model.params, {**library_versions(), "statsforecast": "0.1"}, model.models
    )
    with pytest.raises(IncompatibleArtifact, match="retrain"):
        engine.loads(engine.dumps(old))


def test_detection_sanity_noise_and_an_8_sigma_spike() -> None:
    engine = StatsForecastEngine()
    history = synthetic(4, 24 * 28, seed=11)
    model = engine.fit(
        SeriesFrame(history.data[history.data["ds"] < T0 + pd.Timedelta(days=21)]), SPEC, STEP
    )
    data = history.data.copy()
    spike_at = T0 + pd.Timedelta(days=25, hours=7)
    data.loc[(data["unique_id"] == "s2") & (data["ds"] == spike_at), "y"] += 8.0
    context = SeriesFrame(data[data["ds"] >= T0 + pd.Timedelta(days=20)].reset_index(drop=True))
    at = list(pd.date_range(T0 + pd.Timedelta(days=21), periods=24 * 7, freq="h"))
    bands = engine.predict(model, context, at, 99).merge(context.data, on=["unique_id", "ds"])
    score = anomaly_score(
        bands["y"].to_numpy(),
        bands["yhat"].to_numpy(),
        bands["yhat_lower"].to_numpy(),
        bands["yhat_upper"].to_numpy(),
    )
    spike = (bands["unique_id"] == "s2") & (bands["ds"] == spike_at)
    assert score[spike.to_numpy()][0] > 1
    rate = float((score[~spike.to_numpy()] > 1).mean())
    assert 0.002 <= rate <= 0.03, rate


@pytest.mark.parametrize("policy", ["fit", "skip"])
def test_cold_start_for_series_that_appear_after_training(policy: str) -> None:
    engine = StatsForecastEngine()
    data = synthetic(3, 24 * 21, seed=4)
    trained = data.data[data.data["unique_id"] != "s2"]
    model = engine.fit(SeriesFrame(trained), SPEC.model_copy(update={"cold_start": policy}), STEP)
    assert sorted(model.models) == ["s0", "s1"]
    context = tail(data, 24 * 4)
    at = list(context.data["ds"].drop_duplicates().iloc[-3:])
    bands = engine.predict(model, context, at, 99)
    if policy == "skip":
        assert sorted(bands["unique_id"].unique()) == ["s0", "s1"]
        assert bands.attrs["skipped"] == {"s2": "new since the last train (model.cold_start: skip)"}
        return
    assert sorted(bands["unique_id"].unique()) == ["s0", "s1", "s2"]
    assert bands.attrs["skipped"] == {}
    assert "s2" in model.models  # kept until the next train
    # fitted on the context before the first scored point only: no look-ahead
    again = engine.fit(SeriesFrame(trained), SPEC, STEP)
    changed = context.data.copy()
    changed.loc[(changed["unique_id"] == "s2") & changed["ds"].isin(at), "y"] += 500.0
    moved = engine.predict(again, SeriesFrame(changed), at, 99)
    before = bands[bands["unique_id"] == "s2"].reset_index(drop=True)
    after = moved[moved["unique_id"] == "s2"].reset_index(drop=True)
    pd.testing.assert_frame_equal(before.iloc[:1], after.iloc[:1])  # the first point: untouched
    np.testing.assert_allclose(  # and the band, from the fit, ignored the scored points
        (before["yhat_upper"] - before["yhat_lower"]).to_numpy(),
        (after["yhat_upper"] - after["yhat_lower"]).to_numpy(),
    )


@pytest.mark.parametrize(
    "name",
    ["AutoETS", "ARIMA", "Holt", "SeasonalNaive", "MSTL", "AutoARIMA", "AutoTheta", "AutoCES"],
)
def test_no_look_ahead_for_any_kind_of_model(name: str) -> None:
    """statsforecast's `forward(fitted=True)` re-estimates some models on the whole context
    (AutoARIMA, the Theta family, AutoCES, MSTL's decomposition): found by the NAB work, where
    a spike at t moved MSTL's forecast for t from 9 to 146. Every kind must forecast t from
    the points before t alone."""
    engine = StatsForecastEngine()
    history = synthetic(1, 24 * 12, seed=4)
    params = {"season_length": 24} if name != "Holt" else {}
    model = engine.fit(history, ModelSpec(name=name, params=params), STEP)
    context = tail(history, 72)
    last = context.data["ds"].max()
    changed = context.data.copy()
    changed.loc[changed["ds"] == last, "y"] *= 50
    base = engine.predict(model, context, [last], 99)
    moved = engine.predict(model, SeriesFrame(changed), [last], 99)
    assert len(base) == 1
    pd.testing.assert_frame_equal(base, moved)


def test_models_without_forward_are_refused_and_the_list_is_current() -> None:
    import inspect

    from statsforecast import models as sf_models

    from openanomaly.adapters.model_engine.statsforecast import NO_FORWARD

    lacking = {
        n
        for n in sf_models.__all__
        if inspect.isclass(getattr(sf_models, n)) and not hasattr(getattr(sf_models, n), "forward")
    }
    assert lacking == NO_FORWARD
    issues = StatsForecastEngine().check("HistoricAverage", {})
    assert issues
    assert "without refitting" in issues[0].reason
    assert StatsForecastEngine().check("MSTL", {"season_length": 24}) == []

"""One contract, every engine: fit, serialise, load, predict; no look-ahead; many series.
Engines still to come (MLForecast, NeuralForecast) join the ENGINES list."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.model_engine.mlforecast import MLForecastEngine
from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.config.pipeline import ModelSpec
from openanomaly.domain.series import SeriesFrame

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "custom_engine"))
from moving_average import MovingAverageEngine

STEP = timedelta(hours=1)
T0 = pd.Timestamp("2026-01-01", tz="UTC")
ENGINES: dict[str, tuple[Callable[[], Any], ModelSpec]] = {
    "statsforecast": (StatsForecastEngine, ModelSpec(name="AutoETS", params={"season_length": 24})),
    "mlforecast": (
        MLForecastEngine,
        ModelSpec(engine="mlforecast", name="Ridge", params={"season_length": 24}),
    ),
    "custom": (
        MovingAverageEngine,
        ModelSpec(
            engine="moving_average:MovingAverageEngine", name="MovingAverage", params={"window": 6}
        ),
    ),
}


def history(n_series: int, n_points: int) -> SeriesFrame:
    rng = np.random.default_rng(1)
    t = np.arange(n_points)
    return SeriesFrame(
        pd.concat(
            [
                pd.DataFrame(
                    {
                        "unique_id": f"s{i:03d}",
                        "ds": T0 + pd.to_timedelta(t, unit="h"),
                        "y": 20 + 5 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 1, n_points) + i,
                    }
                )
                for i in range(n_series)
            ],
            ignore_index=True,
        )
    )


@pytest.fixture(params=sorted(ENGINES), scope="module")
def case(request: pytest.FixtureRequest) -> tuple[Any, Any, SeriesFrame]:
    make, spec = ENGINES[request.param]
    engine = make()
    data = history(12, 24 * 14)
    return engine, engine.fit(data, spec, STEP), data


def test_round_trip_and_many_series(case: tuple[Any, Any, SeriesFrame]) -> None:
    engine, model, data = case
    context = SeriesFrame(data.data.groupby("unique_id").tail(48).reset_index(drop=True))
    at = list(context.data["ds"].drop_duplicates().iloc[-6:])
    first = engine.predict(model, context, at, 99)
    again = engine.predict(engine.loads(engine.dumps(model)), context, at, 99)
    assert list(first.columns) == ["unique_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
    assert len(first) == 12 * 6
    pd.testing.assert_frame_equal(first, again)
    assert (first["yhat_lower"] <= first["yhat"]).all()
    assert (first["yhat"] <= first["yhat_upper"]).all()


def test_no_look_ahead(case: tuple[Any, Any, SeriesFrame]) -> None:
    engine, model, data = case
    context = data.data.groupby("unique_id").tail(48).reset_index(drop=True)
    last = context["ds"].max()
    changed = context.copy()
    changed.loc[changed["ds"] == last, "y"] *= 50
    base = engine.predict(model, SeriesFrame(context), [last], 99)
    moved = engine.predict(model, SeriesFrame(changed), [last], 99)
    pd.testing.assert_frame_equal(base, moved)


def test_the_custom_example_passes_validation() -> None:
    catalog = model_catalog("moving_average:MovingAverageEngine")
    assert catalog.check("MovingAverage", {"window": 6}) == []
    assert [i.field for i in catalog.check("Other", {"window": 0})] == ["name", "params.window"]


@pytest.mark.parametrize("name", ["mlforecast", "statsforecast"])
def test_detection_sanity(name: str) -> None:
    """Noise + daily season at level 99: 0.2-3 % of points over 1; an 8-sigma spike over 1.
    (The moving-average example shows the port, not a detector: its band spans the season.)"""
    make, spec = ENGINES[name]
    engine = make()
    data = history(4, 24 * 28).data
    cutoff = T0 + pd.Timedelta(days=21)
    model = engine.fit(SeriesFrame(data[data["ds"] < cutoff].reset_index(drop=True)), spec, STEP)
    spike_at = cutoff + pd.Timedelta(days=3, hours=5)
    data.loc[(data["unique_id"] == "s001") & (data["ds"] == spike_at), "y"] += 8.0
    context = SeriesFrame(data[data["ds"] >= cutoff - pd.Timedelta(days=2)].reset_index(drop=True))
    at = list(pd.date_range(cutoff, periods=24 * 7, freq="h"))
    bands = engine.predict(model, context, at, 99).merge(context.data, on=["unique_id", "ds"])
    from openanomaly.domain.scoring import anomaly_score

    score = anomaly_score(bands["y"], bands["yhat"], bands["yhat_lower"], bands["yhat_upper"])
    spike = ((bands["unique_id"] == "s001") & (bands["ds"] == spike_at)).to_numpy()
    assert len(bands) == 4 * 24 * 7
    assert score[spike][0] > 1
    rate = float((score[~spike] > 1).mean())
    assert 0.002 <= rate <= 0.03, rate


def test_artifacts_of_another_engine_or_shape_are_refused() -> None:
    import pickle

    from openanomaly.errors import IncompatibleArtifact

    stats, ml = StatsForecastEngine(), MLForecastEngine()
    data = history(2, 24 * 7)
    blob = ml.dumps(ml.fit(data, ENGINES["mlforecast"][1], STEP))
    with pytest.raises(IncompatibleArtifact, match="holds a mlforecast model"):
        stats.loads(blob)
    for junk in (pickle.dumps([1, 2]), pickle.dumps({"format": 99}), b"\x80\x04garbage"):
        with pytest.raises(IncompatibleArtifact):
            ml.loads(junk)

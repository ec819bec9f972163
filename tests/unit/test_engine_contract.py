"""One contract, every engine: fit, serialise, load, predict; no look-ahead; many series; what
hygiene leaves behind (gaps cut out, constant and too-short series).

NeuralForecast runs with a tiny network and few training steps: it tests the contract, not the
network. It needs the `neural` extra, which CI installs (.ci/install-neural)."""

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
from openanomaly.adapters.model_engine.neuralforecast import NeuralForecastEngine
from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.config.pipeline import ModelSpec
from openanomaly.domain.series import SeriesFrame
from tests.conftest import require_module

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
    "neuralforecast": (
        NeuralForecastEngine,
        ModelSpec(
            engine="neuralforecast",
            name="NHITS",
            params={"season_length": 24, "max_steps": 100, "mlp_units": [[32, 32]] * 3},
        ),
    ),
    "custom": (
        MovingAverageEngine,
        ModelSpec(
            engine="moving_average:MovingAverageEngine", name="MovingAverage", params={"window": 6}
        ),
    ),
}


def engine_case(name: str) -> tuple[Callable[[], Any], ModelSpec]:
    if name == "neuralforecast":
        require_module("neuralforecast", "the `neural` extra: bash .ci/install-neural")
    return ENGINES[name]


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
    make, spec = engine_case(request.param)
    engine = make()
    data = history(12, 24 * 14)
    return engine, engine.fit(data, spec, STEP), data


def test_round_trip_and_many_series(case: tuple[Any, Any, SeriesFrame]) -> None:
    engine, model, data = case
    context = SeriesFrame(data.data.groupby("unique_id").tail(48).reset_index(drop=True))
    at = list(context.data["ds"].drop_duplicates().iloc[-6:])
    first = engine.predict(model, context, at, 99)
    again = engine.predict(engine.loads(engine.dumps(model)), context, at, 99)
    assert list(first.columns)[:5] == ["unique_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
    if not isinstance(engine, MovingAverageEngine):  # built-in engines keep the training range
        assert list(first.columns)[5:] == ["train_min", "train_max"]
        assert (first["train_min"] < first["train_max"]).all()
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


def test_the_forecast_does_not_depend_on_where_the_context_starts(
    case: tuple[Any, Any, SeriesFrame],
) -> None:
    """A context starting mid-season (as a real one almost always does) forecasts like one
    starting where training started. Found live: ETS `forward` reused the training window's
    initial states, so a phase-shifted context had its seasonality out of phase."""
    engine, model, data = case
    at = list(data.data["ds"].drop_duplicates().iloc[-6:])
    aligned = engine.predict(model, SeriesFrame(data.data.groupby("unique_id").tail(96)), at, 99)
    shifted = engine.predict(model, SeriesFrame(data.data.groupby("unique_id").tail(89)), at, 99)
    assert len(aligned) == len(shifted) == 12 * 6
    width = (aligned["yhat_upper"] - aligned["yhat_lower"]).to_numpy()
    moved = np.abs(aligned["yhat"].to_numpy() - shifted["yhat"].to_numpy())
    assert (moved < 0.1 * width).all(), moved.max()


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_what_hygiene_leaves_behind(name: str) -> None:
    """A gap cut out of a series, a constant series, and one too short for any model: the batch
    goes through, every band is finite and ordered, and each series not scored has a reason."""
    make, spec = engine_case(name)
    engine = make()
    data = history(3, 24 * 14).data
    t = data["ds"].drop_duplicates().sort_values()
    gap = (data["unique_id"] == "s002") & data["ds"].between(t.iloc[100], t.iloc[130])
    constant = data[data["unique_id"] == "s000"].assign(unique_id="const", y=5.0)
    short = data[data["unique_id"] == "s000"].tail(10).assign(unique_id="short")
    frame = pd.concat([data[~gap], constant, short], ignore_index=True)
    frame = SeriesFrame(frame.sort_values(["unique_id", "ds"]).reset_index(drop=True))
    model = engine.fit(frame, spec, STEP)
    at = list(t.iloc[-4:])
    bands = engine.predict(engine.loads(engine.dumps(model)), frame, at, 99)
    scored = set(bands["unique_id"])
    assert {"s000", "s001", "s002"} <= scored
    values = bands[["yhat", "yhat_lower", "yhat_upper"]].to_numpy()
    assert np.isfinite(values).all()
    assert (bands["yhat_lower"] <= bands["yhat"]).all()
    assert (bands["yhat"] <= bands["yhat_upper"]).all()
    for uid in {"const", "short"} - scored:
        assert bands.attrs["skipped"][uid]
    assert "const" in scored or name == "neuralforecast"  # 0 scaled by 0 is not a forecast


def test_the_custom_example_passes_validation() -> None:
    catalog = model_catalog("moving_average:MovingAverageEngine")
    assert catalog.check("MovingAverage", {"window": 6}) == []
    assert [i.field for i in catalog.check("Other", {"window": 0})] == ["name", "params.window"]


@pytest.mark.parametrize("name", ["mlforecast", "neuralforecast", "statsforecast"])
def test_detection_sanity(name: str) -> None:
    """Noise + daily season at level 99: 0.2-3 % of points over 1; an 8-sigma spike over 1.
    (The moving-average example shows the port, not a detector: its band spans the season.)"""
    make, spec = engine_case(name)
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

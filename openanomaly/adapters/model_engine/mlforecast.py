"""MLForecast: gradient boosting or linear regressors on lag, rolling and calendar features."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from openanomaly.adapters.model_engine.catalog_checks import check_name
from openanomaly.adapters.model_engine.introspect import package_dir
from openanomaly.adapters.model_engine.pickled import dump_model, load_model
from openanomaly.config.pipeline import season_steps
from openanomaly.domain.ranges import ranges_for, training_ranges
from openanomaly.ports import CatalogIssue

if TYPE_CHECKING:
    from openanomaly.config.pipeline import ModelSpec
    from openanomaly.domain.series import SeriesFrame

# Regressor name -> the package that provides it. Curated rather than discovered: listing every
# scikit-learn estimator means importing all of scikit-learn (seconds), and these are the
# regressors that make sense on lag features at monitoring scale.
REGRESSORS: dict[str, str] = {
    "LGBMRegressor": "lightgbm",
    "LinearRegression": "sklearn",
    "Ridge": "sklearn",
    "Lasso": "sklearn",
    "ElasticNet": "sklearn",
    "HuberRegressor": "sklearn",
    "HistGradientBoostingRegressor": "sklearn",
    "RandomForestRegressor": "sklearn",
    "ExtraTreesRegressor": "sklearn",
    "KNeighborsRegressor": "sklearn",
}


class MLForecastCatalog:
    engine = "mlforecast"

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        issues = check_name(self.engine, name, REGRESSORS)
        if issues:
            return issues
        package = REGRESSORS[name]
        if package_dir(package) is None:
            return [
                CatalogIssue("name", f"{name} needs the '{package}' package: pip install {package}")
            ]
        return []


_MODULES = {
    "LGBMRegressor": "lightgbm",
    "LinearRegression": "sklearn.linear_model",
    "Ridge": "sklearn.linear_model",
    "Lasso": "sklearn.linear_model",
    "ElasticNet": "sklearn.linear_model",
    "HuberRegressor": "sklearn.linear_model",
    "HistGradientBoostingRegressor": "sklearn.ensemble",
    "RandomForestRegressor": "sklearn.ensemble",
    "ExtraTreesRegressor": "sklearn.ensemble",
    "KNeighborsRegressor": "sklearn.neighbors",
}
CALIBRATION_SHARE = 0.2  # the newest fifth of each series calibrates the band
MIN_CALIBRATION = 20  # fewer held-out errors than this: use the pooled errors of all series


@dataclass
class FittedRegressor:
    """One regressor for all series of a pipeline, on lag, rolling and calendar features."""

    model_name: str
    regressor: Any
    lags: list[int]
    rolling: int
    date_features: list[str]
    freq: str
    half_width: dict[str, float] = field(default_factory=dict)  # per series, at `level`
    pooled_half_width: float = 0.0
    level: float = 99.0
    versions: dict[str, str] = field(default_factory=dict)
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # training min, max


class MLForecastEngine(MLForecastCatalog):
    """A regressor over lag features built with mlforecast. Each prediction is one step ahead
    (every feature comes from values before t). The band is split-conformal: the regressor is
    first fitted on the older 80 % of each series, its absolute one-step errors on the newest
    20 % give the `level` quantile as the band's half-width, and it is then refitted on all of
    it. Libraries are imported when fitting or predicting, not with this module."""

    def fit(self, frame: SeriesFrame, spec: ModelSpec, step: timedelta) -> FittedRegressor:
        import numpy as np
        import pandas as pd

        params = dict(spec.params)
        seasons = season_steps(params.pop("season_length", None), step)
        season = max(seasons) if seasons else 0
        lags = sorted({1, 2, 3, *([season] if season > 3 else [])})
        rolling = season if season > 1 else 12
        dates = [
            d
            for d, limit in (("hour", 86_400), ("dayofweek", 604_800))
            if step.total_seconds() < limit
        ]
        fitted = FittedRegressor(
            spec.name,
            None,
            lags,
            rolling,
            dates,
            f"{int(step.total_seconds())}s",
            level=spec.level,
            versions=_versions(),
        )
        table = self._features(fitted, frame)
        table = table.dropna()
        features = table.drop(columns=["unique_id", "ds", "y"])
        rank = table.groupby("unique_id").cumcount()
        size = table.groupby("unique_id")["y"].transform("size")
        calibration = (rank >= size * (1 - CALIBRATION_SHARE)).to_numpy()
        probe = self._regressor(spec.name, params)
        probe.fit(features[~calibration], table["y"][~calibration])
        errors = np.abs(table["y"][calibration].to_numpy() - probe.predict(features[calibration]))
        ids = table["unique_id"][calibration].to_numpy()
        quantile = spec.level / 100
        fitted.pooled_half_width = float(np.quantile(errors, quantile)) if len(errors) else 0.0
        # One grouped pass (a mask per series would be quadratic: ~265 s at 10,000 series).
        by_series = pd.Series(errors).groupby(ids)
        sizes = by_series.size()
        quantiles = by_series.quantile(quantile)
        for uid in sizes.index[sizes.to_numpy() >= MIN_CALIBRATION]:
            fitted.half_width[str(uid)] = float(quantiles[uid])
        fitted.regressor = self._regressor(spec.name, params)
        fitted.regressor.fit(features, table["y"])
        fitted.ranges = training_ranges(frame.data)
        return fitted

    def _regressor(self, name: str, params: dict[str, Any]) -> Any:
        import importlib

        return getattr(importlib.import_module(_MODULES[name]), name)(**params)

    def _features(self, fitted: FittedRegressor, frame: SeriesFrame) -> Any:
        from mlforecast import MLForecast
        from mlforecast.lag_transforms import RollingMean

        data, owner = _segments(frame.data, fitted.freq)
        builder = MLForecast(
            models=[],
            freq=fitted.freq,
            lags=fitted.lags,
            lag_transforms={1: [RollingMean(window_size=fitted.rolling)]},
            date_features=fitted.date_features,
        )
        table: Any = builder.preprocess(data, dropna=False)
        table["unique_id"] = owner.reindex(table["unique_id"].to_numpy()).to_numpy()
        return table

    def predict(
        self, model: FittedRegressor, context: SeriesFrame, at: Sequence[datetime], level: float
    ) -> Any:
        import numpy as np
        import pandas as pd

        from openanomaly.domain.series import SeriesFrame

        wanted = pd.to_datetime(list(at), utc=True).tz_localize(None)
        # Features at t need at most max(lags, rolling) points before t: build them only for
        # the end of the context, not all of it (~10x less work for one scored point).
        need = max(*model.lags, model.rolling) + 1
        earliest = wanted.min() - pd.Timedelta(model.freq) * need if len(wanted) else None
        if earliest is not None:
            data = context.data
            context = SeriesFrame(
                data[data["ds"].dt.tz_localize(None) >= earliest].reset_index(drop=True),
                context.labels,
            )
        table = self._features(model, context)
        table = table[table["ds"].isin(wanted)]
        features = table.drop(columns=["unique_id", "ds", "y"])
        usable = features.notna().all(axis=1).to_numpy()
        need = max(*model.lags, model.rolling)
        skipped = {
            str(u): f"fewer than {need} gap-free points before the time to score (lags)"
            for u in set(table["unique_id"][~usable]) - set(table["unique_id"][usable])
        }
        table, features = table[usable], features[usable]
        yhat = model.regressor.predict(features) if len(table) else np.empty(0)
        half = table["unique_id"].map(
            lambda u: model.half_width.get(str(u), model.pooled_half_width)
        )
        bands = pd.DataFrame(
            {
                "unique_id": table["unique_id"].to_numpy(),
                "ds": pd.to_datetime(table["ds"].to_numpy()).tz_localize("UTC"),
                "yhat": yhat,
                "yhat_lower": yhat - half.to_numpy(dtype=float),
                "yhat_upper": yhat + half.to_numpy(dtype=float),
                **ranges_for(table["unique_id"].to_numpy(), model.ranges),
            }
        )
        bands.attrs["skipped"] = skipped
        return bands

    def dumps(self, model: FittedRegressor) -> bytes:
        return dump_model(self.engine, model)

    def loads(self, blob: bytes) -> FittedRegressor:
        return load_model(blob, self.engine, FittedRegressor, _versions())


def _segments(frame: Any, freq: str) -> tuple[Any, Any]:
    """Split each series at the gaps hygiene cut out, as segments named `uid#k`: mlforecast
    refuses gaps (and NaN), and a lag must never reach across one. A segment's first rows lack
    lags and are neither trained on nor scored. Returns the data and segment -> series."""
    import numpy as np
    import pandas as pd

    data = frame[["unique_id", "ds", "y"]].copy()
    data["ds"] = data["ds"].dt.tz_localize(None)
    ids = data["unique_id"].to_numpy()
    ds = data["ds"].to_numpy()
    new_series = np.r_[True, ids[1:] != ids[:-1]]
    breaks = new_series | np.r_[True, ds[1:] - ds[:-1] != pd.Timedelta(freq).to_timedelta64()]
    if not breaks[~new_series].any():
        return data, pd.Series(ids, index=ids).drop_duplicates()  # no gaps: nothing to split
    segment = np.cumsum(breaks) - np.maximum.accumulate(np.where(new_series, np.cumsum(breaks), 0))
    data["unique_id"] = [f"{u}#{k}" for u, k in zip(ids.tolist(), segment.tolist(), strict=True)]
    owner = pd.Series(ids, index=data["unique_id"].to_numpy())
    return data, owner[~owner.index.duplicated()]


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {name: version(name) for name in ("mlforecast", "scikit-learn", "numpy")}

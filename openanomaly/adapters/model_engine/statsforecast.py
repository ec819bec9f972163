"""StatsForecast: classical models (AutoETS, AutoARIMA, MSTL, ...) fitted per series."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from openanomaly.adapters.model_engine.catalog_checks import check_name, check_params
from openanomaly.adapters.model_engine.introspect import (
    class_signatures,
    module_exports,
    package_dir,
)
from openanomaly.adapters.model_engine.pickled import dump_model, load_model
from openanomaly.adapters.model_engine.sf_onestep import (
    freeze_mstl,
    half_width,
    one_step,
    training_errors,
)
from openanomaly.config.pipeline import season_steps
from openanomaly.domain.ranges import ranges_for
from openanomaly.ports import CatalogIssue

if TYPE_CHECKING:
    import pandas as pd

    from openanomaly.config.pipeline import ModelSpec
    from openanomaly.domain.series import SeriesFrame

# Exported by statsforecast.models but not forecasters a user can pick from YAML: they wrap
# another estimator object, or produce constant/empty output.
_NOT_SELECTABLE = frozenset({"SklearnModel", "ConstantModel", "ZeroModel", "NaNModel"})
# Models statsforecast gives no `forward`: they cannot forecast new data without a refit on it,
# so they cannot score a context with the fitted model. A test keeps this list in step with
# the installed statsforecast.
NO_FORWARD = frozenset(
    {
        "ADIDA", "ARCH", "AutoMFLES", "AutoTBATS", "CrostonClassic", "CrostonOptimized",
        "CrostonSBA", "GARCH", "HistoricAverage", "IMAPA", "MFLES", "RandomWalkWithDrift",
        "SeasonalExponentialSmoothing", "SeasonalExponentialSmoothingOptimized",
        "SeasonalWindowAverage", "SimpleExponentialSmoothing",
        "SimpleExponentialSmoothingOptimized", "TBATS", "TSB", "UCM", "WindowAverage",
    }
)  # fmt: skip
# statsforecast's ETS code skips the seasonal component when season_length > 24 (it inherits R
# forecast's limit): the fit succeeds but the seasonality silently disappears.
_MAX_SEASON = {"AutoETS": 24, "HoltWinters": 24}


class StatsForecastCatalog:
    """Models of `statsforecast.models`, read from its source (see `introspect`)."""

    engine = "statsforecast"

    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        root = package_dir("statsforecast")
        if root is None:
            return [CatalogIssue("name", "statsforecast is not installed")]
        models = root / "models.py"
        known = [n for n in module_exports(models) if n not in _NOT_SELECTABLE]
        issues = check_name(self.engine, name, known)
        if issues:
            return issues
        if name in NO_FORWARD:
            reason = (
                f"{name} cannot forecast new points without refitting on them "
                "(statsforecast has no `forward` for it); use AutoETS, MSTL, ARIMA, "
                "AutoARIMA, AutoTheta or SeasonalNaive"
            )
            return [CatalogIssue("name", reason)]
        issues = check_params(name, class_signatures(models)[name], params)
        season = params.get("season_length")
        seasons = season if isinstance(season, list) else [season]
        if name == "MSTL" and any(isinstance(m, int) and m < 2 for m in seasons):
            reason = (
                "MSTL needs seasons of at least 2 steps (the default daily season needs a "
                "step of 12h or less); use season_length: 1w, or another model"
            )
            issues.append(CatalogIssue("params.season_length", reason))
        limit = _MAX_SEASON.get(name)
        if limit is not None and isinstance(season, int) and season > limit:
            issues.append(
                CatalogIssue(
                    "params.season_length",
                    (
                        f"{name} supports season_length up to {limit} steps, got {season}: "
                        "statsforecast would drop the seasonality; "
                        "use MSTL for long seasons, or a longer step"
                    ),
                )
            )
        return issues


# In-sample arrays a fitted model keeps but `forward` does not read: ~80 KB per AutoETS series
# fitted on a week of 5-minute points. A test checks trimmed and untrimmed give equal forecasts.
_TRIMMABLE = {
    "AutoETS": ("fitted", "residuals", "actual_residuals", "states"),
    "HoltWinters": ("fitted", "residuals", "actual_residuals", "states"),
}


@dataclass
class FittedSeries:
    """Fitted models of one pipeline: one statsforecast model per series."""

    model_name: str
    params: dict[str, Any]
    versions: dict[str, str]
    models: dict[str, Any] = field(default_factory=dict)
    sigma: dict[str, float] = field(default_factory=dict)  # one-step residual RMS, training
    # The band's half-width at `level`: the level quantile of the absolute training errors.
    half: dict[str, float] = field(default_factory=dict)
    level: float = 99.0
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)  # training min, max
    skipped: dict[str, str] = field(default_factory=dict)
    cold_start: str = "fit"
    # Per series, the time (ns since the epoch) of the first point the model was fitted on:
    # the seasonal phase of its initial states (see `sf_onestep.restarted`).
    origin: dict[str, int] = field(default_factory=dict)
    step_ns: int = 0


class StatsForecastEngine(StatsForecastCatalog):
    """numpy, pandas and statsforecast are imported when fitting or predicting, not with this
    module: `validate` loads the catalog above and must stay fast.

    The band is yhat +/- z(level) * sigma, sigma being the RMS of the one-step-ahead errors on
    the training window (a normal one-step prediction interval, as statsforecast computes its
    own, but with the variance fixed at training).

    Fits any `statsforecast.models` class per series; predicts with the fitted model's
    `forward`, which refits nothing: it filters the context with the fitted parameters and
    returns one-step-ahead forecasts for every context point, so the forecast at t uses only
    data before t."""

    def fit(self, frame: SeriesFrame, spec: ModelSpec, step: timedelta) -> FittedSeries:
        import numpy as np
        from statsforecast import StatsForecast
        from statsforecast import models as sf_models

        params = resolved_params(spec, step)
        model_class = getattr(sf_models, spec.name)
        fitted = FittedSeries(spec.name, params, library_versions(), cold_start=spec.cold_start)
        data = frame.data[["unique_id", "ds", "y"]].copy()
        data["ds"] = data["ds"].dt.tz_localize(None)
        freq = f"{int(step.total_seconds())}s"
        try:
            forecaster = StatsForecast(models=[model_class(**params)], freq=freq, n_jobs=1)
            forecaster.fit(data)
            uids = [str(u) for u in forecaster.uids]
            fitted.models = {u: forecaster.fitted_[i, 0] for i, u in enumerate(uids)}
        except Exception:  # one series can fail the batch: isolate it, fit the rest one by one
            for uid, group in data.groupby("unique_id", sort=True):
                try:
                    model = model_class(**params).fit(group["y"].to_numpy(dtype=np.float64))
                    fitted.models[str(uid)] = model
                except Exception as exc:
                    fitted.skipped[str(uid)] = f"{spec.name} could not fit: {exc}"
        # The band's width comes from the training residuals, never from the context being
        # scored: statsforecast's own fitted intervals take the variance of the whole context,
        # so a spike at t would widen the band at t (look-ahead, and a spike hiding itself).
        fitted.step_ns = int(step.total_seconds() * 1e9)
        fitted.level = spec.level
        made_up = np.zeros(len(data), dtype=bool) if frame.filled is None else frame.filled
        for key, rows in data.groupby("unique_id", sort=True).indices.items():
            uid = str(key)
            model = fitted.models.get(uid)
            if model is not None:
                y = data["y"].to_numpy(dtype=np.float64)[rows]
                origin = int(data["ds"].iloc[rows[0]].value)
                self._calibrate(fitted, uid, model, y, origin=origin, made_up=made_up[rows])
        return fitted

    def _calibrate(
        self,
        fitted: FittedSeries,
        uid: str,
        model: Any,
        y: Any,
        *,
        origin: int,
        made_up: Any = None,
    ) -> None:
        """Band, range and phase origin of one freshly fitted series; keeps the model small.
        The band comes from the errors at observed points (`made_up`: rows hygiene filled)."""
        import numpy as np

        if type(model).__name__ == "MSTL":
            model, errors = freeze_mstl(model, y)
            model.trend = self._trim(model.trend)
        else:
            errors = training_errors(model, y)
            model = self._trim(model)
        if made_up is not None and made_up.any():
            errors = np.where(made_up, np.nan, errors)
        finite = errors[np.isfinite(errors)]
        fitted.sigma[uid] = float(np.sqrt(np.mean(finite**2))) if len(finite) else 0.0
        fitted.half[uid] = half_width(errors, fitted.level, y)
        fitted.ranges[uid] = (float(np.min(y)), float(np.max(y)))
        fitted.origin[uid] = origin
        fitted.models[uid] = model

    def _cold_start(self, model: FittedSeries, uid: str, history: Any, origin: int) -> str | None:
        """Fit a series the training did not see on the context before the first point to
        score (never on the points themselves). Returns why it could not, or None."""
        from statsforecast import models as sf_models

        if model.cold_start != "fit":
            return "new since the last train (model.cold_start: skip)"
        try:
            fresh = getattr(sf_models, model.model_name)(**model.params).fit(history)
        except Exception as exc:  # too short, constant, ...: this series waits for the train
            return f"new since the last train; {model.model_name} could not fit its context: {exc}"
        self._calibrate(model, uid, fresh, history, origin=origin)
        return None

    def _trim(self, model: Any) -> Any:
        state = getattr(model, "model_", None)
        if isinstance(state, dict):
            for key in _TRIMMABLE.get(type(model).__name__, ()):
                state.pop(key, None)
            optimiser: Any = state.get("fit")
            if hasattr(optimiser, "_replace") and hasattr(optimiser, "simplex"):
                # `forward` passes the optimiser result through untouched; its final simplex
                # (~6 KB) is of no use once fitted.
                state["fit"] = optimiser._replace(simplex=None)
        return model

    def predict(
        self, model: FittedSeries, context: SeriesFrame, at: Sequence[datetime], level: float
    ) -> pd.DataFrame:
        import numpy as np
        import pandas as pd

        data = context.data
        # Already UTC in a SeriesFrame; to_datetime's unique-value cache costs 40 ms at 10k.
        ds = pd.to_datetime(data["ds"], utc=True, cache=False).to_numpy(dtype="datetime64[ns]")
        wanted = pd.to_datetime(list(at), utc=True).to_numpy(dtype="datetime64[ns]")
        take_all = np.isin(ds, wanted)
        ids = data["unique_id"].to_numpy()
        y_all = data["y"].to_numpy(dtype=np.float64)
        # Series are contiguous runs in the frame (it is sorted by unique_id, then ds).
        starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
        ends = np.r_[starts[1:], len(ids)]
        scale = _level_scale(level, model.level)
        out_ids, out_ds, out_yhat, out_half = [], [], [], []
        skipped: dict[str, str] = {}
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            take = take_all[start:end]
            uid = str(ids[start])
            if not take.any():
                continue
            if uid in model.skipped:
                skipped[uid] = model.skipped[uid]  # failed at training: waits for the next
                continue
            if uid not in model.models:
                first = int(np.argmax(take))
                origin = int(ds[start].astype(np.int64))
                reason = self._cold_start(model, uid, y_all[start : start + first], origin)
                if reason is not None:
                    skipped[uid] = reason
                    continue
            try:
                forecast = _forecast(
                    model, uid, y_all[start:end], int(ds[start].astype(np.int64)), take
                )
            except Exception as exc:  # a context of a point or two after an outage, ...
                skipped[uid] = f"{model.model_name} could not filter the context: {exc}"
                continue
            yhat = forecast[take]
            known = np.isfinite(yhat)
            yhat, when = yhat[known], ds[start:end][take][known]
            out_ids.append(uid)
            out_ds.append(when)
            out_yhat.append(yhat)
            out_half.append(model.half[uid] * scale)
        if not out_ids:
            empty = pd.DataFrame(columns=["unique_id", "ds", "yhat", "yhat_lower", "yhat_upper"])
            empty.attrs["skipped"] = skipped
            return empty
        counts = [len(y) for y in out_yhat]
        yhat = np.concatenate(out_yhat)
        half = np.repeat(np.asarray(out_half, dtype=np.float64), counts)
        uids = np.repeat(np.asarray(out_ids, dtype=object), counts)
        bands = pd.DataFrame(
            {
                "unique_id": uids,
                "ds": pd.to_datetime(np.concatenate(out_ds), utc=True),
                "yhat": yhat,
                "yhat_lower": yhat - half,
                "yhat_upper": yhat + half,
                **ranges_for(uids, model.ranges),
            }
        )
        bands.attrs["skipped"] = skipped  # series not scored, with the reason: for run records
        return bands

    def dumps(self, model: FittedSeries) -> bytes:
        return dump_model(self.engine, model)

    def loads(self, blob: bytes) -> FittedSeries:
        return load_model(blob, self.engine, FittedSeries, library_versions())


def _level_scale(level: float, fitted_level: float) -> float:
    """A band asked for at another level than fitted: scaled as a normal band would be."""
    normal = NormalDist()
    return normal.inv_cdf(0.5 + level / 200) / normal.inv_cdf(0.5 + fitted_level / 200)


def _forecast(model: FittedSeries, uid: str, y: Any, first_ns: int, wanted: Any) -> Any:
    since = first_ns - model.origin.get(uid, 0)
    step_ns = model.step_ns or 1
    return one_step(
        model.models[uid],
        y,
        offset=since // step_ns,
        step_ns=step_ns,
        since_origin_ns=since,
        wanted=wanted,
    )


def resolved_params(spec: ModelSpec, step: timedelta) -> dict[str, Any]:
    """Constructor parameters with season_length in steps (it may be written as `1d`)."""
    params = dict(spec.params)
    if "season_length" in params:
        seasons = season_steps(params["season_length"], step)
        params["season_length"] = (
            seasons if isinstance(params["season_length"], list) else seasons[0]
        )
    return params


def library_versions() -> dict[str, str]:
    """Versions whose change can make a pickled model load wrong: compared on load."""
    from importlib.metadata import version

    return {name: version(name) for name in ("statsforecast", "numpy")}

"""StatsForecast: classical models (AutoETS, AutoARIMA, MSTL, ...) fitted per series."""

from __future__ import annotations

import copy
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
from openanomaly.config.pipeline import season_steps
from openanomaly.ports import CatalogIssue

if TYPE_CHECKING:
    import pandas as pd

    from openanomaly.config.pipeline import ModelSpec
    from openanomaly.domain.series import SeriesFrame

# Exported by statsforecast.models but not forecasters a user can pick from YAML: they wrap
# another estimator object, or produce constant/empty output.
_NOT_SELECTABLE = frozenset({"SklearnModel", "ConstantModel", "ZeroModel", "NaNModel"})
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
        issues = check_params(name, class_signatures(models)[name], params)
        season = params.get("season_length")
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
    skipped: dict[str, str] = field(default_factory=dict)
    cold_start: str = "fit"
    # Per series, the time (ns since the epoch) of the first point the model was fitted on:
    # the seasonal phase of its initial states (see `_restarted`).
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
        for uid, group in data.groupby("unique_id", sort=True):
            model = fitted.models.get(str(uid))
            if model is not None:
                fitted.origin[str(uid)] = int(group["ds"].iloc[0].value)
                y = group["y"].to_numpy(dtype=np.float64)
                fitted.sigma[str(uid)] = _one_step_rms(model, y)
                fitted.models[str(uid)] = self._trim(model)
        return fitted

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
        model.sigma[uid] = _one_step_rms(fresh, history)
        model.models[uid] = self._trim(fresh)
        model.origin[uid] = origin
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
        z = NormalDist().inv_cdf(0.5 + level / 200)
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
            skip, fitted = _restarted(
                model.models[uid],
                y_all[start:end],
                int(ds[start].astype(np.int64)) - model.origin.get(uid, 0),
                model.step_ns,
            )
            if skip and take[:skip].any():
                take = take.copy()
                take[:skip] = False  # before the aligned start: no forecast there
            result = fitted.forward(y=y_all[start + skip : end], h=1, fitted=True)
            yhat = np.asarray(result["fitted"])[take[skip:]]
            out_ids.append(uid)
            out_ds.append(ds[start:end][take])
            out_yhat.append(yhat)
            out_half.append(z * model.sigma[uid])
        if not out_ids:
            empty = pd.DataFrame(columns=["unique_id", "ds", "yhat", "yhat_lower", "yhat_upper"])
            empty.attrs["skipped"] = skipped
            return empty
        counts = [len(y) for y in out_yhat]
        yhat = np.concatenate(out_yhat)
        half = np.repeat(np.asarray(out_half, dtype=np.float64), counts)
        bands = pd.DataFrame(
            {
                "unique_id": np.repeat(np.asarray(out_ids, dtype=object), counts),
                "ds": pd.to_datetime(np.concatenate(out_ds), utc=True),
                "yhat": yhat,
                "yhat_lower": yhat - half,
                "yhat_upper": yhat + half,
            }
        )
        bands.attrs["skipped"] = skipped  # series not scored, with the reason: for run records
        return bands

    def dumps(self, model: FittedSeries) -> bytes:
        return dump_model(self.engine, model)

    def loads(self, blob: bytes) -> FittedSeries:
        return load_model(blob, self.engine, FittedSeries, library_versions())


def _restarted(model: Any, y: Any, since_origin_ns: int, step_ns: int) -> tuple[int, Any]:
    """(points to drop from the context's start, model to run `forward` with).

    ETS `forward` filters the context starting from the initial states fitted at the first
    point of the *training* window. A context that starts elsewhere in the season (almost
    always) would run with its seasonal indices out of phase, and for a small gamma they
    never catch up within a context. So the context is cut to start at the same seasonal
    phase as training did (at most m - 1 points dropped), and the initial level, which may
    have drifted since training started, is re-estimated as the mean of the first season
    (seasonal indices average out over a season). Smoothing parameters, seasonal indices and
    trend stay as fitted: no refit. Models without such states are returned unchanged."""
    state = getattr(model, "model_", None)
    if not (isinstance(state, dict) and "components" in state and "par" in state):
        return 0, model
    import numpy as np

    m = int(state["m"])
    seasonal = state["components"][2] != "N"
    skip = 0
    if seasonal and m > 1 and step_ns > 0:
        skip = (-(since_origin_ns // step_ns)) % m
        if len(y) - skip < 2 * m:  # too short to align and warm up: keep the fitted states
            return 0, model
    par = np.array(state["par"], dtype=np.float64)
    window = y[skip : skip + m] if seasonal else y[skip : skip + 1]
    par[4] = float(np.mean(window))  # the initial level
    restarted = copy.copy(model)
    restarted.model_ = {**state, "par": par}
    return skip, restarted


def _one_step_rms(model: Any, y: Any) -> float:
    """RMS of the one-step-ahead errors of `model` over `y`: the band's sigma."""
    import numpy as np

    one_step = np.asarray(model.forward(y=y, h=1, fitted=True)["fitted"])
    errors = (y - one_step)[np.isfinite(one_step)]
    return float(np.sqrt(np.mean(errors**2))) if len(errors) else 0.0


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

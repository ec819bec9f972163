"""One-step-ahead forecasts from fitted statsforecast models, with no look-ahead by construction.

statsforecast's `forward(y, fitted=True)` is what makes scoring fast (one pass over the context
gives every point's forecast), but only for models that *filter*: ETS and ARIMA run their state
recursion with the fitted parameters, so the fitted value at t depends on y before t alone.
Others re-estimate on the whole context first (AutoARIMA picks its coefficients again, the Theta
family and AutoCES refit, MSTL decomposes the whole context), so a spike at t moves the forecast
at t: it partly hides itself. A unit test checks every model named below against that.

So each model is scored one of three ways:
- `FILTERS`: `forward(fitted=True)` over the context, once;
- MSTL: the seasonal components are frozen at training (the last season of each, repeated by
  phase, as MSTL itself forecasts them) and the trend model (AutoETS) filters the context with
  those removed: as fast as ETS, and a spike cannot leak into the seasonal estimate;
- any other model with `forward`: one `forward(y[:i], h=1)` per point scored, i.e. exactly a
  forecast from the points before it (slow, correct).
Models without `forward` cannot score new data without a refit and are refused at validation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

FILTERS = frozenset({"AutoETS", "ARIMA", "Holt", "HoltWinters", "Naive", "SeasonalNaive"})


@dataclass
class SeasonalTrend:
    """An MSTL fit reduced to what scoring needs: per season length m, the seasonal component
    by phase (index = steps since the training origin, mod m), and the fitted trend model."""

    phases: list[F64]
    trend: Any

    def seasonal(self, offsets: npt.NDArray[np.int64]) -> F64:
        total = np.zeros(len(offsets), dtype=np.float64)
        for phase in self.phases:
            total += phase[offsets % len(phase)]
        return total


def freeze_mstl(model: Any, y: F64) -> tuple[SeasonalTrend, F64]:
    """(the reduced model, its one-step errors over the training data when it forecasts them
    as it will forecast new points: the band's calibration).

    Not the trend model's in-sample errors: there the seasonal part was estimated with each
    point itself, so they understate real forecast errors (a band from them is crossed many
    times a day)."""
    n_train = len(y)
    frame = model.model_
    phases = []
    for column in [c for c in frame.columns if str(c).startswith("seasonal")]:
        values = frame[column].to_numpy(dtype=np.float64)
        m = _season_of(column, model.season_length)
        last = values[n_train - m : n_train]
        # last[k] sits at training index n - m + k, whose phase is (n - m + k) mod m
        phases.append(np.roll(last, n_train % m))
    frozen = SeasonalTrend(phases, model.trend_forecaster)
    forecast = one_step(
        frozen, y, offset=0, step_ns=0, since_origin_ns=0, wanted=np.ones(n_train, dtype=bool)
    )
    return frozen, y - forecast


def _season_of(column: str, season_length: Any) -> int:
    if column == "seasonal":
        return int(season_length if not isinstance(season_length, list) else season_length[0])
    return int(column.removeprefix("seasonal"))


def one_step(
    model: Any, y: F64, *, offset: int, step_ns: int, since_origin_ns: int, wanted: Any
) -> F64:
    """The forecast for the points of `y` where `wanted` (a boolean mask) from the points
    before each (NaN where there is none; other points may be NaN too).

    `offset` is the index of y[0] in steps since the training origin (the seasonal phase)."""
    if isinstance(model, SeasonalTrend):
        season = model.seasonal(offset + np.arange(len(y), dtype=np.int64))
        trend = _filtered(model.trend, y - season, since_origin_ns, step_ns)
        return trend + season
    if type(model).__name__ in FILTERS:
        return _filtered(model, y, since_origin_ns, step_ns)
    out = np.full(len(y), np.nan)
    for i in np.flatnonzero(wanted).tolist():
        if i < 2:
            continue
        try:
            out[i] = float(np.asarray(model.forward(y=y[:i], h=1)["mean"])[0])
        except Exception:  # noqa: S112 - too few points for this model yet: no forecast there
            continue
    return out


def _filtered(model: Any, y: F64, since_origin_ns: int, step_ns: int) -> F64:
    skip, fitted = restarted(model, y, since_origin_ns, step_ns)
    out = np.full(len(y), np.nan)
    out[skip:] = np.asarray(fitted.forward(y=y[skip:], h=1, fitted=True)["fitted"])
    return out


def restarted(model: Any, y: Any, since_origin_ns: int, step_ns: int) -> tuple[int, Any]:
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
    fresh = copy.copy(model)
    fresh.model_ = {**state, "par": par}
    return skip, fresh


def training_errors(model: Any, y: F64) -> F64:
    """One-step errors on the training data, for the band: the filter's own where it has one,
    else the in-sample fitted values (a forecast per point over a long window is too slow)."""
    if type(model).__name__ not in FILTERS:
        try:
            fitted = np.asarray(model.predict_in_sample()["fitted"], dtype=np.float64)
            return y - fitted
        except Exception:  # noqa: S110 - no in-sample values kept: `forward` below instead
            pass
    one_step_fit = np.asarray(model.forward(y=y, h=1, fitted=True)["fitted"], dtype=np.float64)
    return y - one_step_fit


# A band narrower than this share of the series' magnitude is rounding noise: a noise-free
# periodic series is forecast to 1e-13, and a band that narrow turns float error into alerts.
RELATIVE_FLOOR = 1e-6


def half_width(errors: F64, level: float, y: F64) -> float:
    """The band's half-width: the `level` quantile of the absolute one-step errors, so that
    `level` % of the training points fall inside. Real metrics have heavy tails; a normal band
    (z x RMS) is crossed far more often than 100 - level % of the time."""
    finite = np.abs(errors[np.isfinite(errors)])
    floor = RELATIVE_FLOOR * float(np.max(np.abs(y))) if len(y) else 0.0
    return max(float(np.quantile(finite, level / 100)) if len(finite) else 0.0, floor)

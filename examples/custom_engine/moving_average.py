"""A custom engine, as small as one can be: a moving average with a fixed-width band.

Use it from a pipeline with

    model:
      engine: moving_average:MovingAverageEngine   # this file's directory on PYTHONPATH
      name: MovingAverage
      params: {window: 12}

An engine is any class with these methods (see `ModelEngine` in openanomaly/ports.py):

- `check(name, params)`: problems with the model section, as `validate` shows them (optional);
- `fit(frame, spec, step)`: learn from history; `frame.data` has columns unique_id, ds, y, with
  no gaps and no NaN (data hygiene ran first);
- `predict(model, context, at, level)`: for each series and each time in `at`, give yhat,
  yhat_lower and yhat_upper. The forecast for t may use only context before t;
  Series it cannot score go in the result's `attrs["skipped"]` as {unique_id: reason}: the
  daemon counts and reports them (a series neither scored nor skipped is reported without a
  reason);
- `dumps(model)` and `loads(blob)`: the model as bytes and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from openanomaly.config.pipeline import ModelSpec
from openanomaly.domain.series import SeriesFrame
from openanomaly.errors import IncompatibleArtifact
from openanomaly.ports import CatalogIssue


class MovingAverageEngine:
    def check(self, name: str, params: Mapping[str, Any]) -> list[CatalogIssue]:
        issues = []
        if name != "MovingAverage":
            issues.append(
                CatalogIssue("name", f"this engine has one model, MovingAverage, not {name!r}")
            )
        window = params.get("window", 12)
        if not isinstance(window, int) or window < 1:
            issues.append(
                CatalogIssue("params.window", "window must be a whole number of steps >= 1")
            )
        return issues

    def fit(self, frame: SeriesFrame, spec: ModelSpec, step: timedelta) -> dict[str, Any]:
        window = int(spec.params.get("window", 12))
        sigma = {}
        for uid, group in frame.data.groupby("unique_id", sort=True):
            y = group["y"].to_numpy(dtype=np.float64)
            errors = y[window:] - _moving_mean(y, window)[window:]
            sigma[str(uid)] = float(np.sqrt(np.mean(errors**2))) if len(errors) else 0.0
        return {"window": window, "sigma": sigma}

    def predict(
        self, model: dict[str, Any], context: SeriesFrame, at: Sequence[datetime], level: float
    ) -> pd.DataFrame:
        z = NormalDist().inv_cdf(0.5 + level / 200)
        wanted = pd.to_datetime(list(at), utc=True)
        parts, skipped = [], {}
        for uid, group in context.data.groupby("unique_id", sort=True):
            asked = group["ds"].isin(wanted).to_numpy()
            if not asked.any():
                continue
            if str(uid) not in model["sigma"]:
                skipped[str(uid)] = "new since the last train"
                continue
            yhat = _moving_mean(group["y"].to_numpy(dtype=np.float64), model["window"])
            take = asked & np.isfinite(yhat)
            if not take.any():
                skipped[str(uid)] = f"fewer than window={model['window']} points before"
                continue
            half = z * model["sigma"][str(uid)]
            parts.append(
                pd.DataFrame(
                    {
                        "unique_id": uid,
                        "ds": group["ds"].to_numpy()[take],
                        "yhat": yhat[take],
                        "yhat_lower": yhat[take] - half,
                        "yhat_upper": yhat[take] + half,
                    }
                )
            )
        columns = ["unique_id", "ds", "yhat", "yhat_lower", "yhat_upper"]
        bands = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
        bands.attrs["skipped"] = skipped
        return bands

    def dumps(self, model: dict[str, Any]) -> bytes:
        return json.dumps({"format": "moving-average/1", **model}).encode()

    def loads(self, blob: bytes) -> dict[str, Any]:
        try:
            data = json.loads(blob)
        except ValueError as exc:
            raise IncompatibleArtifact(f"not a moving-average model: {exc}") from None
        if data.pop("format", None) != "moving-average/1":
            raise IncompatibleArtifact("not a moving-average/1 model")
        return dict(data)


def _moving_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Mean of the `window` points before each point (NaN where there are not enough)."""
    sums = np.concatenate([[0.0], np.cumsum(y)])
    out = np.full(len(y), np.nan)
    out[window:] = (sums[window:-1] - sums[: len(y) - window]) / window
    return out

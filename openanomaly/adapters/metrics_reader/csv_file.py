"""A CSV file as a metrics reader, so a pipeline can be backtested offline.

Two layouts, told apart by the header: `timestamp,value` (one series) or
`timestamp,series,value` (long format, one series per distinct `series`). Timestamps are Unix
seconds (fractions allowed) or ISO 8601 (UTC unless they carry an offset). The pipeline's query
is ignored: the file is the data.

A range query is answered as a TSDB answers `avg_over_time(series[step])`: one point per
multiple of `step` since the epoch, the mean of the file's points in (t - step, t]. Data on the
grid comes back unchanged; irregular data (points between grid times, two points in one step)
gives exactly what VictoriaMetrics or Prometheus give for that query once the file is written to
them, so a backtest from the file and one from the TSDB score the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from openanomaly.domain.series import SeriesFrame, series_id, utc_times
from openanomaly.errors import ConfigError, Problem


class CsvReader:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._frame = _read(path)

    def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        *,
        max_series: int | None = None,
    ) -> SeriesFrame:
        data = self._frame.data
        step_ns = int(step.total_seconds() * 1e9)
        if step_ns <= 0:
            raise ValueError("step must be positive")
        ns = data["ds"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        slot = -(-ns // step_ns) * step_ns  # the grid time whose (t - step, t] holds the point
        first = -(-int(pd.Timestamp(start).value) // step_ns) * step_ns
        last = int(pd.Timestamp(end).value) // step_ns * step_ns
        keep = (slot >= first) & (slot <= last)
        inside = (
            pd.DataFrame({"unique_id": data["unique_id"].to_numpy()[keep], "slot": slot[keep]})
            .assign(y=data["y"].to_numpy(dtype=np.float64)[keep])
            .groupby(["unique_id", "slot"], sort=True)["y"]
            .mean()  # NaN points are skipped; a step holding only NaN stays NaN
            .reset_index()
        )
        inside = pd.DataFrame(
            {
                "unique_id": inside["unique_id"].to_numpy(),
                "ds": utc_times(inside["slot"].to_numpy(dtype=np.int64)),
                "y": inside["y"].to_numpy(dtype=np.float64),
            }
        )
        if max_series is not None and len(self._frame.labels) > max_series:
            reason = f"{len(self._frame.labels)} series, more than limits.max_series={max_series}"
            raise ConfigError([Problem(str(self.path), 0, "", reason)])
        return SeriesFrame(inside, self._frame.labels)

    def close(self) -> None:
        return None


def _problem(path: Path, line: int, field: str, reason: str) -> ConfigError:
    return ConfigError([Problem(str(path), line, field, reason)])


def _read(path: Path) -> SeriesFrame:
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except FileNotFoundError:
        raise _problem(path, 0, "", "no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise _problem(path, 0, "", f"not a readable CSV file: {exc}") from None
    columns = [c.strip().lower() for c in raw.columns]
    raw.columns = pd.Index(columns)
    if columns not in (["timestamp", "value"], ["timestamp", "series", "value"]):
        reason = (
            f"header must be 'timestamp,value' or 'timestamp,series,value', got {','.join(columns)}"
        )
        raise _problem(path, 1, "", reason)
    if raw.empty:
        raise _problem(path, 2, "", "no rows")
    stamps = raw["timestamp"]
    numeric = pd.to_numeric(stamps, errors="coerce")
    is_number = numeric.notna().to_numpy()
    ds = pd.Series(pd.NaT, index=stamps.index, dtype="datetime64[ns, UTC]")
    if is_number.any():
        ns = (numeric[is_number] * 1e9).round().astype("int64")
        ds[is_number] = pd.to_datetime(ns, unit="ns", utc=True)
    if not is_number.all():
        text = stamps[~is_number]
        ds[~is_number] = pd.to_datetime(text, utc=True, errors="coerce", format="ISO8601")
    bad = ds.isna().to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        reason = f"{stamps.iloc[row]!r} is neither Unix seconds nor an ISO 8601 time"
        raise _problem(path, row + 2, "timestamp", reason)
    values = pd.to_numeric(raw["value"].replace({"": "NaN"}), errors="coerce")
    bad_value = values.isna().to_numpy() & ~raw["value"].str.lower().isin(["", "nan"]).to_numpy()
    if bad_value.any():
        row = int(np.argmax(bad_value))
        raise _problem(path, row + 2, "value", f"{raw['value'].iloc[row]!r} is not a number")
    names = raw["series"] if "series" in raw else pd.Series([""] * len(raw))
    labels = {name: ({"series": name} if name else {}) for name in pd.unique(names)}
    ids = {name: series_id(lab) for name, lab in labels.items()}
    data = pd.DataFrame(
        {"unique_id": names.map(ids).to_numpy(), "ds": ds.to_numpy(), "y": values.to_numpy()}
    )
    data["ds"] = pd.to_datetime(data["ds"], utc=True)
    data = data.sort_values(["unique_id", "ds"], kind="stable").reset_index(drop=True)
    return SeriesFrame(data, {ids[n]: dict(lab) for n, lab in labels.items()})

"""A CSV file as a metrics reader, so a pipeline can be backtested offline.

Two layouts, told apart by the header: `timestamp,value` (one series) or
`timestamp,series,value` (long format, one series per distinct `series`). Timestamps are Unix
seconds (fractions allowed) or ISO 8601 (UTC unless they carry an offset). The pipeline's query
is ignored: the file is the data. Points are not resampled here; data hygiene puts them on the
step grid as it does for TSDB data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from openanomaly.domain.series import SeriesFrame, series_id
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
        inside = data[(data["ds"] >= start) & (data["ds"] <= end)].reset_index(drop=True)
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

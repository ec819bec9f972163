"""Series identity and the long frame every engine and use case speaks.

A series is identified by its full label set. Its `unique_id` is the canonical PromQL-style text of
the sorted labels (`{__name__="up",job="node"}`): stable across runs and processes (shards and
model caches rely on that), unique, and readable in a CSV or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from openanomaly.domain.labels import escape_label_value

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
    import pandas as pd

Labels = Mapping[str, str]
FRAME_COLUMNS = ("unique_id", "ds", "y")


def series_id(labels: Labels) -> str:
    """Canonical, order-independent text of a label set."""
    inner = ",".join(f'{name}="{escape_label_value(labels[name])}"' for name in sorted(labels))
    return "{" + inner + "}"


@dataclass(frozen=True)
class SeriesFrame:
    """Many series in long format: `data` has columns unique_id (str), ds (UTC datetime64),
    y (float64), sorted by unique_id then ds; gaps are absent rows, NaN is a value the TSDB
    returned. `labels` maps every unique_id in `data` to its label set."""

    data: pd.DataFrame
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    # Rows data hygiene made up (gaps filled by interpolation), aligned with `data`; None when
    # there are none or nobody knows. Engines calibrate their bands on observed rows only: a
    # straight line between two points is easy to forecast, and counting it would narrow the
    # band of every irregularly sampled series.
    filled: npt.NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        missing = [c for c in FRAME_COLUMNS if c not in self.data.columns]
        if missing:
            raise ValueError(f"SeriesFrame data lacks columns {missing}")

    @property
    def series_count(self) -> int:
        return len(self.labels)


def utc_times(ns: npt.NDArray[np.int64]) -> pd.DatetimeIndex:
    """Nanoseconds since the epoch as UTC times, without a copy's worth of work:
    `pd.to_datetime(ns, unit="ns", utc=True)` takes 0.77 s on 14 M values, this 0.01 s."""
    import numpy as np
    import pandas as pd

    return pd.DatetimeIndex(np.asarray(ns, dtype=np.int64).view("M8[ns]")).tz_localize("UTC")

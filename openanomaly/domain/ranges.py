"""The range a series kept during training, for scoring values outside anything seen.

Engines record each series' training minimum and maximum at fit and return them with every
forecast (columns `train_min`, `train_max`); `scoring.outside_range` turns a value beyond them
into a score. A metric reaching a level it never reached in the whole training window is the
most common sign of trouble that a one-step forecast adapts to within a few points."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

RANGE_COLUMNS = ("train_min", "train_max")


def training_ranges(frame: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """{unique_id: (min, max)} of the finite values of a long frame (unique_id, ds, y)."""
    finite = frame[np.isfinite(frame["y"].to_numpy(dtype=np.float64))]
    grouped = finite.groupby("unique_id", sort=False)["y"].agg(["min", "max"])
    return {
        str(uid): (float(low), float(high))
        for uid, low, high in zip(grouped.index, grouped["min"], grouped["max"], strict=True)
    }


def range_columns(
    ranges: list[tuple[float, float]], counts: list[int]
) -> dict[str, npt.NDArray[np.float64]]:
    """The two columns for a bands frame holding `counts[i]` rows of the i-th series."""
    lows = np.asarray([r[0] for r in ranges], dtype=np.float64)
    highs = np.asarray([r[1] for r in ranges], dtype=np.float64)
    return {"train_min": np.repeat(lows, counts), "train_max": np.repeat(highs, counts)}


def ranges_for(
    uids: npt.NDArray[np.object_], ranges: dict[str, tuple[float, float]]
) -> dict[str, npt.NDArray[np.float64]]:
    """The two columns for a bands frame whose rows belong to `uids` (NaN where unknown)."""
    ids = pd.Series(uids, dtype=object).astype(str)
    nan = (np.nan, np.nan)
    return {
        "train_min": ids.map(lambda u: ranges.get(u, nan)[0]).to_numpy(dtype=np.float64),
        "train_max": ids.map(lambda u: ranges.get(u, nan)[1]).to_numpy(dtype=np.float64),
    }

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


def ranges_for(
    uids: npt.NDArray[np.object_], ranges: dict[str, tuple[float, float]]
) -> dict[str, npt.NDArray[np.float64]]:
    """The two columns for a bands frame whose rows belong to `uids` (NaN where unknown)."""
    ids = pd.Series(uids, dtype=object).astype(str)
    lows = {uid: low for uid, (low, _) in ranges.items()}
    highs = {uid: high for uid, (_, high) in ranges.items()}
    low: npt.NDArray[np.float64] = np.asarray(ids.map(lows), dtype=np.float64)
    high: npt.NDArray[np.float64] = np.asarray(ids.map(highs), dtype=np.float64)
    return {"train_min": low, "train_max": high}

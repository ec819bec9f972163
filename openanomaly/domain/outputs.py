"""Scored points -> the output series written back: {prefix}_score, _yhat, _yhat_lower and
_yhat_upper per input series, carrying the input's labels plus pipeline and model."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from openanomaly.domain.labels import OUTPUT_KINDS, LabelTuple, output_series_labels
from openanomaly.ports import OutputSeries


def build_outputs(
    scored: pd.DataFrame,
    labels: Mapping[str, Mapping[str, str]],
    prefix: str,
    own: Mapping[str, str],
    cache: dict[str, dict[str, LabelTuple]] | None = None,
) -> list[OutputSeries]:
    """`scored` has unique_id, ds, yhat, yhat_lower, yhat_upper and score. A NaN value is not
    written (a score of NaN means "unknown", which must not read as 0 on a dashboard).
    `cache` keeps each series' output labels between runs of one pipeline (same prefix and
    own labels): building them is most of this function's cost at 10,000 series."""
    if scored.empty:
        return []
    data = scored.sort_values(["unique_id", "ds"], kind="stable")
    ids = data["unique_id"].to_numpy()
    ts_ms = data["ds"].to_numpy(dtype="datetime64[ms]").astype(np.int64)
    columns = {kind: data[kind].to_numpy(dtype=np.float64) for kind in OUTPUT_KINDS}
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    out: list[OutputSeries] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        uid = str(ids[start])
        by_kind = cache.get(uid) if cache is not None else None
        if by_kind is None:
            by_kind = output_series_labels(prefix, labels.get(uid, {}), own)
            if cache is not None:
                cache[uid] = by_kind
        stamps = ts_ms[start:end]
        for kind in OUTPUT_KINDS:
            values = columns[kind][start:end]
            keep = ~np.isnan(values)
            if keep.any():
                out.append(OutputSeries(by_kind[kind], stamps[keep], values[keep]))
    return out

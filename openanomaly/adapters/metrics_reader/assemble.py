"""Range chunks -> one long frame, with memory in proportion to the samples.

Each answer is flattened as soon as it is parsed (three arrays and one label set per series),
so what waits for the last chunk is 20 bytes a sample, not a numpy array and a label dict per
series per chunk (at 10,000 series x 58 chunks that overhead was larger than the data). The
chunks are then joined with one stable sort on an integer series rank.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from openanomaly.adapters.metrics_reader.parse import RangeResult
from openanomaly.domain.series import SeriesFrame, utc_times


@dataclass
class FlatChunk:
    keys: list[str]
    labels: list[dict[str, str]]
    lengths: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]  # ms
    values: npt.NDArray[np.float64]
    warnings: list[str] = field(default_factory=list)


def flatten(result: RangeResult) -> FlatChunk:
    keys = list(result.labels)
    lengths = np.array([len(result.timestamps[k]) for k in keys], dtype=np.int64)
    empty_ts, empty_v = np.empty(0, np.int64), np.empty(0, np.float64)
    return FlatChunk(
        keys,
        [result.labels[k] for k in keys],
        lengths,
        np.concatenate([result.timestamps[k] for k in keys]) if keys else empty_ts,
        np.concatenate([result.values[k] for k in keys]) if keys else empty_v,
        list(result.warnings),
    )


def assemble(chunks: list[FlatChunk]) -> tuple[SeriesFrame, list[str]]:
    """One frame sorted by unique_id then time, and the servers' warnings. Chunks come in
    time order; a timestamp two chunks both returned is kept once. `chunks` is emptied as it
    is consumed, so the caller's list does not keep the pieces alive."""
    code_of: dict[str, int] = {}
    keys: list[str] = []
    labels: list[dict[str, str]] = []
    warnings: list[str] = []
    code_parts, ts_parts, value_parts = [], [], []
    for chunk in chunks:
        codes = np.empty(len(chunk.keys), dtype=np.int64)
        for i, key in enumerate(chunk.keys):
            code = code_of.get(key)
            if code is None:
                code = code_of[key] = len(keys)
                keys.append(key)
                labels.append(chunk.labels[i])
            codes[i] = code
        code_parts.append(np.repeat(codes.astype(np.int32), chunk.lengths))
        ts_parts.append(chunk.timestamps)
        value_parts.append(chunk.values)
        warnings += chunk.warnings
    chunks.clear()
    by_name = sorted(range(len(keys)), key=keys.__getitem__)
    rank = np.empty(len(keys), dtype=np.int32)
    rank[by_name] = np.arange(len(keys), dtype=np.int32)
    series = rank[np.concatenate(code_parts)] if code_parts else np.empty(0, np.int32)
    del code_parts
    order = np.argsort(series, kind="stable")  # chunks are in time order: stable keeps it
    series = series[order]
    # One column at a time, each piece list dropped once joined: the peak holds one joined
    # column and its sorted copy, not all three of each.
    ts = np.concatenate(ts_parts)[order] if ts_parts else np.empty(0, np.int64)
    del ts_parts
    values = np.concatenate(value_parts)[order] if value_parts else np.empty(0, np.float64)
    del value_parts, order
    same = series[1:] == series[:-1]
    if not bool(np.all(ts[1:][same] > ts[:-1][same])):  # overlap or disorder: the rare case
        order = np.lexsort((ts, series))
        series, ts, values = series[order], ts[order], values[order]
        keep = np.r_[True, (series[1:] != series[:-1]) | (ts[1:] != ts[:-1])]
        series, ts, values = series[keep], ts[keep], values[keep]
    names = np.array([keys[i] for i in by_name], dtype=object)
    data = pd.DataFrame(
        {
            "unique_id": names[series],
            "ds": utc_times(ts * 1_000_000),
            "y": values,
        },
        copy=False,  # the arrays are ours alone: a copy would double the peak memory
    )
    return SeriesFrame(data, {keys[i]: labels[i] for i in by_name}), warnings

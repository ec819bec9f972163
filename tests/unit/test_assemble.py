"""Joining range chunks: order, overlap, disorder, series with no samples."""

from __future__ import annotations

import numpy as np

from openanomaly.adapters.metrics_reader.assemble import FlatChunk, assemble, flatten
from openanomaly.adapters.metrics_reader.parse import RangeResult


def chunk(
    series: dict[str, list[tuple[int, float]]], warnings: list[str] | None = None
) -> FlatChunk:
    result = RangeResult(warnings=warnings or [])
    for key, points in series.items():
        result.labels[key] = {"k": key}
        result.timestamps[key] = np.array([t for t, _ in points], dtype=np.int64)
        result.values[key] = np.array([v for _, v in points], dtype=np.float64)
    return flatten(result)


def test_chunks_join_per_series_sorted_by_id_then_time() -> None:
    chunks = [
        chunk({"b": [(1, 1.0), (2, 2.0)], "a": [(1, 10.0)]}),
        chunk({"a": [(3, 30.0)], "c": [(3, 0.5)], "b": [(3, 3.0)]}, warnings=["w"]),
    ]
    frame, warnings = assemble(chunks)
    assert chunks == []  # consumed: the caller's list no longer holds the pieces
    assert warnings == ["w"]
    rows = list(
        zip(
            frame.data["unique_id"],
            frame.data["ds"].astype("int64") // 10**6,
            frame.data["y"],
            strict=True,
        )
    )
    assert rows == [
        ("a", 1, 10.0),
        ("a", 3, 30.0),
        ("b", 1, 1.0),
        ("b", 2, 2.0),
        ("b", 3, 3.0),
        ("c", 3, 0.5),
    ]
    assert list(frame.labels) == ["a", "b", "c"]
    assert str(frame.data["ds"].dt.tz) == "UTC"


def test_a_boundary_point_returned_twice_is_kept_once_and_disorder_is_sorted() -> None:
    frame, _ = assemble([chunk({"a": [(5, 5.0), (6, 6.0)]}), chunk({"a": [(6, 6.0), (1, 1.0)]})])
    assert (frame.data["ds"].astype("int64") // 10**6).tolist() == [1, 5, 6]
    assert frame.data["y"].tolist() == [1.0, 5.0, 6.0]


def test_a_series_without_samples_keeps_its_labels_and_nothing_is_empty() -> None:
    frame, _ = assemble([chunk({"a": [], "b": [(1, 1.0)]})])
    assert set(frame.labels) == {"a", "b"}
    assert frame.data["unique_id"].tolist() == ["b"]
    empty, _ = assemble([])
    assert empty.data.empty
    assert list(empty.data.columns) == ["unique_id", "ds", "y"]

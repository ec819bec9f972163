"""Incremental reads give the same frame as a full read, and read only what is new."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.series import SeriesFrame
from openanomaly.usecases.context_cache import OVERLAP_STEPS, ContextCache

STEP = timedelta(minutes=1)
T0 = datetime(2026, 3, 1, tzinfo=UTC)
P = Pipeline.model_validate({"name": "p", "query": "up", "step": "1m"})


class TableReader:
    """An in-memory MetricsReader over a fixed table; records the ranges asked for."""

    def __init__(self, data: pd.DataFrame) -> None:
        self.data = data
        self.asked: list[tuple[datetime, datetime]] = []

    def query_range(
        self,
        query: str,
        start: datetime,
        end: datetime,
        step: timedelta,
        *,
        max_series: int | None = None,
    ) -> SeriesFrame:
        self.asked.append((start, end))
        rows = self.data[self.data["ds"].between(start, end)].reset_index(drop=True)
        return SeriesFrame(rows, {u: {"id": u} for u in rows["unique_id"].unique()})

    def close(self) -> None:
        return None


def table(minutes: int, series: tuple[str, ...] = ("a", "b")) -> pd.DataFrame:
    stamps = pd.date_range(T0, periods=minutes, freq="1min")
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "unique_id": np.repeat(series, minutes),
            "ds": np.tile(stamps, len(series)),
            "y": rng.normal(size=minutes * len(series)),
        }
    )


def test_the_second_cycle_reads_only_new_points_and_matches_a_full_read() -> None:
    reader = TableReader(table(600))
    cache = ContextCache()
    first = cache.read(reader, P, 1, T0 + timedelta(minutes=100), T0 + timedelta(minutes=400))
    assert len(first.data) == 2 * 301
    second = cache.read(reader, P, 1, T0 + timedelta(minutes=105), T0 + timedelta(minutes=405))
    start, end = reader.asked[-1]
    assert (start, end) == (
        T0 + timedelta(minutes=400 - OVERLAP_STEPS),
        T0 + timedelta(minutes=405),
    )
    full = TableReader(reader.data).query_range(
        "up", T0 + timedelta(minutes=105), T0 + timedelta(minutes=405), STEP
    )
    pd.testing.assert_frame_equal(second.data, full.data)
    assert (cache.full_reads, cache.incremental_reads) == (1, 1)


def test_late_samples_within_the_overlap_are_picked_up() -> None:
    data = table(600)
    reader = TableReader(data)
    cache = ContextCache()
    cache.read(reader, P, 1, T0, T0 + timedelta(minutes=300))
    late = data["ds"] == T0 + timedelta(minutes=299)
    reader.data = data.assign(y=np.where(late, 1e6, data["y"]))
    again = cache.read(reader, P, 1, T0, T0 + timedelta(minutes=301))
    assert (again.data.loc[again.data["ds"] == T0 + timedelta(minutes=299), "y"] == 1e6).all()


def test_a_new_model_version_or_a_gap_forces_a_full_read() -> None:
    reader = TableReader(table(600))
    cache = ContextCache()
    cache.read(reader, P, 1, T0, T0 + timedelta(minutes=100))
    cache.read(reader, P, 2, T0, T0 + timedelta(minutes=101))  # retrained
    assert reader.asked[-1][0] == T0
    cache.read(reader, P, 2, T0 + timedelta(minutes=300), T0 + timedelta(minutes=400))  # downtime
    assert reader.asked[-1][0] == T0 + timedelta(minutes=300)
    assert (cache.full_reads, cache.incremental_reads) == (3, 0)


def test_series_that_appear_later_join_and_old_ones_age_out() -> None:
    data = pd.concat([table(200, ("a",)), table(400, ("b",)).iloc[200:]], ignore_index=True)
    reader = TableReader(data)
    cache = ContextCache()
    first = cache.read(reader, P, 1, T0 + timedelta(minutes=100), T0 + timedelta(minutes=199))
    assert set(first.labels) == {"a"}
    later = cache.read(reader, P, 1, T0 + timedelta(minutes=150), T0 + timedelta(minutes=260))
    assert set(later.labels) == {"a", "b"}
    gone = cache.read(reader, P, 1, T0 + timedelta(minutes=250), T0 + timedelta(minutes=300))
    assert set(gone.labels) == {"b"}


def test_cycles_with_the_same_start_reuse_series_runs_and_stay_exact() -> None:
    reader = TableReader(table(600, ("a", "b", "c")))
    cache = ContextCache()
    start = T0 + timedelta(minutes=60)
    for minute in range(300, 306):  # the start stays put: runs carried from cycle to cycle
        got = cache.read(reader, P, 1, start, T0 + timedelta(minutes=minute))
        full = TableReader(reader.data).query_range(
            "up", start, T0 + timedelta(minutes=minute), STEP
        )
        pd.testing.assert_frame_equal(got.data, full.data)
    assert (cache.full_reads, cache.incremental_reads) == (1, 5)


def test_output_labels_follow_the_pipelines_output_settings() -> None:
    cache = ContextCache()
    first = cache.output_labels(P)
    first["a"] = "labels built for prefix anomaly"
    assert cache.output_labels(P) is first
    renamed = P.model_copy(update={"output": P.output.model_copy(update={"prefix": "oa"})})
    assert cache.output_labels(renamed) == {}  # a run under the old settings cannot refill it

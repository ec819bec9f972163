"""Which points an infer run scores, and which context each is scored from."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.usecases.common import floor_to_step
from openanomaly.usecases.infer import scoring_window
from openanomaly.usecases.scoring import context_starts

P = Pipeline.model_validate(
    {"name": "p", "query": "up", "step": "5m", "infer": {"context": "8h", "max_catchup": "1h"}}
)
NOW = datetime(2026, 3, 1, 12, 7, 31, tzinfo=UTC)
DELAY = timedelta(seconds=30)


def test_floor_to_step_uses_the_epoch_grid() -> None:
    assert floor_to_step(NOW, timedelta(minutes=5)) == datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    assert floor_to_step(NOW, timedelta(days=1)) == datetime(2026, 3, 1, tzinfo=UTC)


def test_scores_after_the_watermark_up_to_now_minus_delay() -> None:
    watermark = datetime(2026, 3, 1, 11, 50, tzinfo=UTC)
    first, last = scoring_window(P, NOW, DELAY, watermark)
    assert (first, last) == (
        watermark + timedelta(minutes=5),
        datetime(2026, 3, 1, 12, 5, tzinfo=UTC),
    )


def test_nothing_new_gives_an_empty_window() -> None:
    last = datetime(2026, 3, 1, 12, 5, tzinfo=UTC)
    first, end = scoring_window(P, NOW, DELAY, last)
    assert first > end


def test_catch_up_is_bounded_by_max_catchup() -> None:
    long_ago = datetime(2026, 2, 27, tzinfo=UTC)
    first, last = scoring_window(P, NOW, DELAY, long_ago)
    assert last - first == timedelta(minutes=55)  # 12 points: one hour of 5m steps


def test_without_a_watermark_scoring_starts_max_catchup_back() -> None:
    first, last = scoring_window(P, NOW, DELAY, None)
    assert last - first == timedelta(minutes=55)


def test_a_point_gets_the_same_context_start_in_any_run() -> None:
    one = pd.date_range("2026-03-01 10:00", "2026-03-01 12:00", freq="5min", tz="UTC")
    two = pd.date_range("2026-03-01 11:05", "2026-03-01 13:00", freq="5min", tz="UTC")
    a = dict(zip(one, context_starts(P, one), strict=True))
    b = dict(zip(two, context_starts(P, two), strict=True))
    shared = set(a) & set(b)
    assert len(shared) == 12
    assert all(a[t] == b[t] for t in shared)
    for t, start in a.items():
        assert timedelta(hours=8) <= t - start < timedelta(hours=9)  # context .. 1.125 context

"""Data hygiene against a plain per-series reference implementation of the documented policy."""

from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from openanomaly.domain.hygiene import HygienePolicy, prepare

T0 = pd.Timestamp("2026-01-01", tz="UTC")
STEP = timedelta(minutes=1)


def reference(
    frame: pd.DataFrame, policy: HygienePolicy
) -> tuple[dict[str, list[tuple[int, float]]], set[str]]:
    """The policy in the docstring, one series at a time, in plain Python."""
    out: dict[str, list[tuple[int, float]]] = {}
    skipped = set()
    for uid in pd.unique(frame["unique_id"]):
        rows = frame[frame["unique_id"] == uid]
        slots: dict[int, list[float]] = {}
        for ds, y in zip(rows["ds"], rows["y"], strict=True):
            if math.isfinite(y):
                slots.setdefault(
                    int((ds - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(STEP)), []
                ).append(y)
        points = sorted((s, sum(v) / len(v)) for s, v in slots.items())
        kept: list[tuple[int, float]] = []
        for slot, y in points:
            if kept and slot - kept[-1][0] - 1 > policy.max_gap_steps:
                kept = []
            if kept:
                (s0, y0), missing = kept[-1], slot - kept[-1][0]
                kept += [
                    (s0 + k, y - (y - y0) * (missing - k) / missing) for k in range(1, missing)
                ]
            kept.append((slot, y))
        if len(kept) < policy.min_points:
            skipped.add(str(uid))
        else:
            out[str(uid)] = kept
    return out, skipped


def as_points(frame: pd.DataFrame) -> dict[str, list[tuple[int, float]]]:
    base = pd.Timestamp(0, tz="UTC")
    return {
        str(uid): [
            (int((ds - base) // pd.Timedelta(STEP)), y)
            for ds, y in zip(g["ds"], g["y"], strict=True)
        ]
        for uid, g in frame.groupby("unique_id", sort=True)
    }


@pytest.mark.parametrize("seed", range(25))
def test_matches_the_reference_on_random_data(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(int(rng.integers(1, 12))):
        n = int(rng.integers(0, 60))
        slots = np.sort(rng.choice(200, size=n, replace=False)) if n else np.array([], dtype=int)
        for s in slots:
            seconds = float(rng.choice([0, 0, 0, 20, 45]))  # off-grid and shared slots
            value = float(rng.choice([rng.normal(), np.nan, np.inf], p=[0.85, 0.1, 0.05]))
            rows.append((f"s{i}", T0 + pd.Timedelta(minutes=int(s), seconds=seconds), value))
    frame = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
    if frame.empty:
        return
    frame = frame.sort_values(["unique_id", "ds"], kind="stable")
    policy = HygienePolicy(
        max_gap_steps=int(rng.integers(0, 6)), min_points=int(rng.integers(1, 10))
    )
    got = prepare(frame, STEP, policy)
    want, skipped = reference(frame, policy)
    points = as_points(got.frame)
    assert set(points) == set(want)
    for uid, expected in want.items():
        assert [s for s, _ in points[uid]] == [s for s, _ in expected]
        np.testing.assert_allclose(
            [y for _, y in points[uid]], [y for _, y in expected], rtol=1e-12, atol=1e-12
        )
    assert set(got.skipped) == skipped
    assert not got.frame["y"].isna().any()


def test_short_gaps_are_filled_long_gaps_cut_and_reasons_given() -> None:
    m = pd.Timedelta(minutes=1)
    rows = [("a", T0 + m * i, float(i)) for i in (0, 1, 2, 5, 6)]
    rows += [("b", T0 + m * i, float(i)) for i in (0, 1, 20, 21, 22)]
    rows += [("c", T0, math.nan), ("c", T0 + m, 1.0)]
    rows += [("d", T0, math.inf)]
    frame = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
    got = prepare(frame, STEP, HygienePolicy(max_gap_steps=5, min_points=2))
    points = as_points(got.frame)
    base = int((T0 - pd.Timestamp(0, tz="UTC")) // m)
    assert points["a"] == [(base + i, float(i)) for i in range(7)]
    assert [y for _, y in points["b"]] == [20.0, 21.0, 22.0]
    assert got.filled_points == 2
    assert got.skipped == {
        "c": "1 usable point(s) (finite values after the last gap longer than 5 steps); needs 2",
        "d": "no finite values",
    }


def test_constant_series_pass_unchanged() -> None:
    frame = pd.DataFrame(
        {
            "unique_id": ["k"] * 4,
            "ds": [T0 + pd.Timedelta(minutes=i) for i in range(4)],
            "y": [3.0] * 4,
        }
    )
    got = prepare(frame, STEP, HygienePolicy())
    assert got.frame["y"].tolist() == [3.0] * 4


def test_clean_input_takes_the_fast_path_with_the_same_result() -> None:
    """TSDB answers are usually on the grid, sorted and complete: prepare returns them as they
    are. Shuffled, the same rows go through the full policy and must come out the same."""
    stamps = pd.date_range("2026-01-01", periods=50, freq="1min", tz="UTC")
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(["a", "b", "c"], [50, 50, 1]),
            "ds": np.r_[stamps, stamps, stamps[:1]],
            "y": rng.normal(size=101),
        }
    )
    fast = prepare(frame, STEP, HygienePolicy(min_points=2))
    full = prepare(frame.sample(frac=1, random_state=1), STEP, HygienePolicy(min_points=2))
    pd.testing.assert_frame_equal(fast.frame, full.frame, check_dtype=False)
    assert (
        fast.skipped
        == full.skipped
        == {
            "c": "1 usable point(s) (finite values after the last gap longer than 5 steps); needs 2"
        }
    )
    assert fast.frame["ds"].is_monotonic_increasing is False  # two series, each in time order
    assert len(fast.frame) == 100


def test_filled_rows_are_marked_and_training_bridges_gaps_up_to_a_day() -> None:
    from openanomaly.domain.hygiene import training_policy

    minutes = [0, 1, 2, 40, 41, 42]  # a 37-minute gap: cut when scoring, bridged for training
    frame = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": [T0 + m * STEP for m in minutes],
            "y": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
        }
    )
    scoring = prepare(frame, STEP, HygienePolicy())
    assert scoring.frame["y"].tolist() == [4.0, 5.0, 6.0]
    assert scoring.filled is None
    training = prepare(frame, STEP, training_policy(STEP))
    assert len(training.frame) == 43
    assert training.filled_points == 37
    assert training.filled is not None
    assert training.filled.tolist() == [False] * 3 + [True] * 37 + [False] * 3
    assert training_policy(timedelta(hours=1)).max_gap_steps == 24
    assert training_policy(timedelta(days=1)).max_gap_steps == 5

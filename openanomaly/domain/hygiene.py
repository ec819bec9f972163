"""Data hygiene: what every engine gets instead of raw TSDB output.

Policy, per series, in this order:
(Training bridges longer gaps, up to a day: see `training_policy`.)

1. Non-finite values (NaN, +Inf, -Inf) count as missing: no model can fit them.
2. Timestamps are put on the step grid (floored to a multiple of `step`; several samples in one
   step are averaged), from the series' first to its last point.
3. Gaps of at most `max_gap_steps` missing steps are filled by linear interpolation between the
   points around them: a scrape or two lost should not stop scoring.
4. A longer gap means the past before it is another regime (a restart, an outage): only the
   points after the last such gap are kept, so the model sees one contiguous stretch. Points
   inside a long gap are never scored (there is nothing there to score).
5. Series with fewer than `min_points` points left are skipped, each with its reason, so the
   caller can count and report them; nothing raises for one bad series.

Everything is vectorised over all series at once (no Python loop per series).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np
import pandas as pd

from openanomaly.domain.series import utc_times


@dataclass(frozen=True)
class HygienePolicy:
    max_gap_steps: int = 5
    min_points: int = 2


TRAINING_BRIDGE = timedelta(days=1)


def training_policy(step: timedelta) -> HygienePolicy:
    """Training bridges gaps of up to a day (or 5 steps, if longer): one scrape outage in a
    14-day window must not throw away the 13 days before it, and irregularly sampled series
    have gaps everywhere. Bridged points are marked `filled`; engines calibrate their bands
    on observed points only. Scoring keeps the default: its context starts after a long gap."""
    return HygienePolicy(max_gap_steps=max(5, TRAINING_BRIDGE // step))


@dataclass
class Prepared:
    """Clean long frame (unique_id, ds, y; no NaN, regular at `step`) and skipped series."""

    frame: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    filled_points: int = 0  # points created by interpolation
    filled: np.ndarray | None = None  # which rows of `frame` those are (None: no row)


def prepare(frame: pd.DataFrame, step: timedelta, policy: HygienePolicy) -> Prepared:
    step_ns = int(step.total_seconds() * 1e9)
    if step_ns <= 0:
        raise ValueError("step must be positive")
    raw_ids = frame["unique_id"].to_numpy()
    finite = np.isfinite(frame["y"].to_numpy(dtype=np.float64))
    if not finite.any():
        return Prepared(_empty(), {str(u): "no finite values" for u in pd.unique(raw_ids)})

    if finite.all():
        ready = _already_clean(frame, raw_ids, step_ns, policy)
        if ready is not None:
            return ready

    # 2. the step grid; samples sharing a step are averaged
    ids = raw_ids[finite]
    slots = frame["ds"].to_numpy(dtype="datetime64[ns]").astype(np.int64)[finite] // step_ns
    values = frame["y"].to_numpy(dtype=np.float64)[finite]
    if not _sorted_on_grid(ids, slots):  # TSDB answers already are: no regrouping then
        ids, slots, values = _regroup(ids, slots, values)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]

    # 3-4. within each series, the distance to the previous point decides: fill or cut
    gap = np.diff(slots, prepend=slots[0]) - 1  # missing steps before each point
    gap[starts] = 0
    long_gap = gap > policy.max_gap_steps
    # the first point of the kept stretch: the last point that follows a long gap (or the start)
    cut_marks = np.where(long_gap, np.arange(len(slots)), -1)
    cut_marks[starts] = starts
    last_cut = np.maximum.accumulate(cut_marks)  # per position: latest cut so far
    keep_from = last_cut[ends - 1]  # per series
    keep = np.arange(len(slots)) >= np.repeat(keep_from, ends - starts)

    k_ids, k_slots, k_values = ids[keep], slots[keep], values[keep]
    k_gap = np.where(np.isin(np.flatnonzero(keep), keep_from), 0, gap[keep])
    # expand: every kept point brings its filled gap before it
    lengths = k_gap + 1
    out_n = int(lengths.sum())
    out_slot = np.repeat(k_slots, lengths) - (
        np.repeat(np.cumsum(lengths), lengths) - np.arange(1, out_n + 1)
    )
    out_ids = np.repeat(k_ids, lengths)
    right = np.repeat(k_values, lengths)  # the point after the gap
    previous = np.r_[k_values[:1], k_values[:-1]]
    left = np.repeat(previous, lengths)  # the point before it (same series when the gap > 0)
    steps_back = np.repeat(np.cumsum(lengths), lengths) - np.arange(1, out_n + 1)
    fraction = steps_back / np.repeat(lengths, lengths)
    out_values = right - (right - left) * fraction
    filled = int((steps_back > 0).sum())

    clean = pd.DataFrame(
        {
            "unique_id": out_ids,
            "ds": utc_times(out_slot * step_ns),
            "y": out_values,
        }
    )
    # kept points per series: lengths summed over each series' kept points
    firsts = np.flatnonzero(np.r_[True, k_ids[1:] != k_ids[:-1]])
    per_point = np.add.reduceat(lengths, firsts)
    series_ids = k_ids[firsts]
    skipped: dict[str, str] = {}
    everyone = set(raw_ids[np.r_[True, raw_ids[1:] != raw_ids[:-1]]].tolist())  # runs: cheap
    if len(series_ids) != len(everyone):  # some series had no finite value
        for uid in everyone - set(series_ids.tolist()):
            skipped[str(uid)] = "no finite values"
    short = per_point < policy.min_points
    skipped.update(_too_short(series_ids[short], per_point[short], policy))
    kept = ~np.repeat(short, per_point)
    made_up = (steps_back > 0)[kept] if filled else None
    return Prepared(clean[kept].reset_index(drop=True), skipped, filled, made_up)


def _regroup(
    ids: np.ndarray, slots: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by series and step, averaging the samples that share a step."""
    grouped = (
        pd.DataFrame({"unique_id": ids, "slot": slots, "y": values})
        .groupby(["unique_id", "slot"], sort=True)["y"]
        .mean()
    )
    return (
        grouped.index.get_level_values(0).to_numpy(),
        grouped.index.get_level_values(1).to_numpy(dtype=np.int64),
        grouped.to_numpy(dtype=np.float64),
    )


def _already_clean(
    frame: pd.DataFrame, ids: np.ndarray, step_ns: int, policy: HygienePolicy
) -> Prepared | None:
    """The common case, checked in a few vector passes: every value finite, every point on
    the grid, every series sorted and without a missing step. Then there is nothing to fill
    or cut and the frame is used as it is (the full policy runs otherwise)."""
    ns = frame["ds"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    if len(ns) and np.any(ns % step_ns):
        return None
    change = _runs_in_order(ids)
    if change is None:
        return None
    if not bool(np.all((np.diff(ns, prepend=ns[:1] - step_ns) == step_ns) | change)):
        return None
    starts = np.flatnonzero(change)
    counts = np.diff(np.r_[starts, len(ids)])
    short = counts < policy.min_points
    skipped = _too_short(ids[starts][short], counts[short], policy)
    clean = (
        frame
        if list(frame.columns) == ["unique_id", "ds", "y"]
        else frame[["unique_id", "ds", "y"]]
    )
    if short.any():
        clean = clean[~np.repeat(short, counts)]
    if not (isinstance(clean.index, pd.RangeIndex) and clean.index.start == 0):
        clean = clean.reset_index(drop=True)  # copies: only when the index needs it
    return Prepared(clean, skipped, 0)


def _too_short(ids: np.ndarray, counts: np.ndarray, policy: HygienePolicy) -> dict[str, str]:
    return {
        str(uid): (
            f"{count} usable point(s) (finite values after the last gap longer than "
            f"{policy.max_gap_steps} steps); needs {policy.min_points}"
        )
        for uid, count in zip(ids.tolist(), counts.tolist(), strict=True)
    }


def _runs_in_order(ids: np.ndarray) -> np.ndarray | None:
    """Where each series starts (a boolean mask), when series are contiguous runs in
    increasing id order; None otherwise."""
    change: np.ndarray = np.r_[True, ids[1:] != ids[:-1]]
    run_ids = ids[change]
    if len(run_ids) > 1 and not bool(np.all(run_ids[1:] > run_ids[:-1])):
        return None
    return change


def _sorted_on_grid(ids: np.ndarray, slots: np.ndarray) -> bool:
    """Series in contiguous runs, in increasing id order, one point per step, in time order."""
    if not len(ids):
        return True
    change = _runs_in_order(ids)
    if change is None:
        return False
    increasing = np.r_[True, slots[1:] > slots[:-1]]
    return bool(np.all(increasing | change))


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": pd.Series(dtype=object),
            "ds": pd.Series(dtype="datetime64[ns, UTC]"),
            "y": pd.Series(dtype=np.float64),
        }
    )

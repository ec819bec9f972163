"""Incremental reads: a pipeline's recent raw points kept between infer cycles.

Each cycle needs `infer.context` of history, but only the last step or two of it is new. The
cache keeps what was read and asks the TSDB only for the points after the newest one it holds
(plus `OVERLAP_STEPS` before it, which late samples may have changed), so the bytes read per
cycle scale with the new points, not with the context. A full read happens on the first cycle,
after a retrain (the model's version changes), when the pipeline changes, or when the cache is
too old to connect to the new read (after downtime longer than the context).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from threading import Lock
from typing import Any

import numpy as np
import pandas as pd

from openanomaly.config.pipeline import Pipeline
from openanomaly.domain.series import SeriesFrame, utc_times
from openanomaly.domain.shards import in_shard
from openanomaly.ports import MetricsReader

OVERLAP_STEPS = 3


@dataclass
class _Entry:
    key: tuple[str, int]  # config hash, model version
    data: pd.DataFrame
    labels: dict[str, dict[str, str]]
    start: datetime  # the oldest time kept
    end: datetime  # the newest time read
    runs: tuple[np.ndarray, np.ndarray] | None = None  # (series, point count), in data order


@dataclass
class ContextCache:
    _entries: dict[str, _Entry] = field(default_factory=dict)
    _lock: Lock = field(default_factory=Lock)
    _reading: dict[str, Lock] = field(default_factory=dict)  # per pipeline
    full_reads: int = 0
    incremental_reads: int = 0
    reused_reads: int = 0
    # Output labels per pipeline and series, built once (a pipeline change calls forget).
    _outputs: dict[str, tuple[Any, dict[str, Any]]] = field(default_factory=dict)

    def output_labels(self, pipeline: Pipeline) -> dict[str, Any]:
        """Per-series output labels for this pipeline's current output settings (a run that
        started before a change must not fill the new configuration's cache)."""
        key = (
            pipeline.name,
            pipeline.model.name,
            pipeline.output.model_dump_json(),
        )
        with self._lock:
            cached = self._outputs.get(pipeline.name)
            if cached is None or cached[0] != key:
                cached = self._outputs[pipeline.name] = (key, {})
            return cached[1]

    def read(
        self,
        reader: MetricsReader,
        pipeline: Pipeline,
        model_version: int,
        start: datetime,
        end: datetime,
        *,
        shard: tuple[int, int] = (0, 1),
    ) -> SeriesFrame:
        """Raw points of [start, end], from the cache and a read of what it lacks; with
        `shard` (k, n), only the series of shard k of n. Every shard of a cycle that runs in
        this process shares one read: the query returns all series either way."""
        # One read at a time per pipeline: shards of one cycle running together in this
        # process wait for the first one's read instead of each querying the TSDB.
        with self._lock:
            reading = self._reading.setdefault(pipeline.name, Lock())
        with reading:
            entry = self._full(reader, pipeline, model_version, start, end)
        if shard[1] <= 1:
            return SeriesFrame(entry.data, entry.labels)
        if entry.runs is None:
            entry.runs = _runs(entry.data["unique_id"].to_numpy())
        names, lengths = entry.runs
        keep = in_shard(names.tolist(), *shard)
        mask = np.repeat(keep, lengths)
        mine = set(names[keep].tolist())
        labels = {uid: lab for uid, lab in entry.labels.items() if uid in mine}
        return SeriesFrame(entry.data[mask].reset_index(drop=True), labels)

    def _full(
        self,
        reader: MetricsReader,
        pipeline: Pipeline,
        model_version: int,
        start: datetime,
        end: datetime,
    ) -> _Entry:
        key = (pipeline.config_hash(), model_version)
        with self._lock:
            entry = self._entries.get(pipeline.name)
        if entry is not None and entry.key == key and entry.end == end and entry.start == start:
            self.reused_reads += 1  # another shard of this cycle read it already
            return entry
        overlap = pipeline.step * OVERLAP_STEPS
        usable = (
            entry is not None
            and entry.key == key
            and entry.end - overlap >= start
            and entry.end <= end
        )
        if not usable or entry is None:
            frame = self._query(reader, pipeline, start, end)
            self.full_reads += 1
            fresh = _Entry(key, frame.data, dict(frame.labels), start, end)
            self._store(pipeline.name, fresh)
            return fresh
        fetch_from = entry.end - overlap
        new = self._query(reader, pipeline, fetch_from, end)
        self.incremental_reads += 1
        data, runs = _append(entry.data, new.data, start, fetch_from, entry.runs)
        labels = {**entry.labels, **new.labels}
        present = set(runs[0].tolist())
        labels = {uid: lab for uid, lab in labels.items() if uid in present}
        appended = _Entry(key, data, labels, start, end, runs)
        self._store(pipeline.name, appended)
        return appended

    def _query(
        self, reader: MetricsReader, pipeline: Pipeline, start: datetime, end: datetime
    ) -> SeriesFrame:
        return reader.query_range(
            pipeline.query, start, end, pipeline.step, max_series=pipeline.limits.max_series
        )

    def _store(self, name: str, entry: _Entry) -> None:
        with self._lock:
            self._entries[name] = entry

    def forget(self, name: str) -> None:
        with self._lock:
            self._entries.pop(name, None)
            self._outputs.pop(name, None)


def _runs(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(id, length) of each run of equal ids: frames are sorted by id, so runs are series."""
    if not len(ids):
        return ids, np.empty(0, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    return ids[starts], np.diff(np.r_[starts, len(ids)])


def _columns(data: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ns = data["ds"].to_numpy(dtype="datetime64[ns]").view(np.int64)  # whatever the unit
    return data["unique_id"].to_numpy(), ns, data["y"].to_numpy(dtype=np.float64)


def _append(
    old: pd.DataFrame,
    new: pd.DataFrame,
    start: datetime,
    fetch_from: datetime,
    old_runs: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray]]:
    """The old points in [start, fetch_from) and all the new ones, per series in id order.

    Both frames are sorted by (unique_id, ds) and every new point of a series comes after its
    kept old ones, so each row's place is computed (run offsets) and written with numpy,
    without a sort or a pandas `take` (which took 2.9 s a cycle at 10,000 series x 1 day)."""
    o_ids, o_ns, o_y = _columns(old)
    keep = (o_ns >= int(pd.Timestamp(start).value)) & (o_ns < int(pd.Timestamp(fetch_from).value))
    if not keep.all():
        o_ids, o_ns, o_y = o_ids[keep], o_ns[keep], o_y[keep]
        old_runs = None  # points dropped: count again
    n_ids, n_ns, n_y = _columns(new)
    # Comparing 14 M object ids to find the runs costs ~0.35 s: reuse the last cycle's.
    o_run, o_len = old_runs if old_runs is not None else _runs(o_ids)
    n_run, n_len = _runs(n_ids)
    o_at = dict(zip(o_run.tolist(), (np.cumsum(o_len) - o_len).tolist(), strict=True))
    n_at = dict(zip(n_run.tolist(), (np.cumsum(n_len) - n_len).tolist(), strict=True))
    o_n = dict(zip(o_run.tolist(), o_len.tolist(), strict=True))
    n_n = dict(zip(n_run.tolist(), n_len.tolist(), strict=True))
    names = sorted(o_at.keys() | n_at.keys())
    total = np.array([o_n.get(u, 0) + n_n.get(u, 0) for u in names], dtype=np.int64)
    ns = np.empty(int(total.sum()), dtype=np.int64)
    y = np.empty(len(ns), dtype=np.float64)
    # A slice copy per series and side: ~20,000 memcpy at 10,000 series, far cheaper than
    # building and scattering through 14 M-entry index arrays.
    cursor = 0
    for uid in names:
        for at, count, src_ns, src_y in (
            (o_at.get(uid), o_n.get(uid, 0), o_ns, o_y),
            (n_at.get(uid), n_n.get(uid, 0), n_ns, n_y),
        ):
            if count:
                ns[cursor : cursor + count] = src_ns[at : at + count]
                y[cursor : cursor + count] = src_y[at : at + count]
                cursor += count
    ids = np.repeat(np.array(names, dtype=object), total)
    data = pd.DataFrame({"unique_id": ids, "ds": utc_times(ns), "y": y}, copy=False)
    return data, (np.array(names, dtype=object), total)

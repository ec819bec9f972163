"""Cluster mode's pure parts: jobs as JSON, shards, planning a cycle, combining results, the
ContextCache's shard slices, the dispatcher settings, and the thread pool running jobs."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from openanomaly.adapters.job_dispatcher.threads import ThreadPoolDispatcher
from openanomaly.adapters.model_registry.sql import SqlRegistry
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.settings import Settings
from openanomaly.domain.jobs import Job, JobResult
from openanomaly.domain.series import SeriesFrame, series_id
from openanomaly.domain.shards import in_shard, shard_count, shard_of
from openanomaly.ports import ArtifactRef, ModelRecord
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.jobs import JobRunner, combine, plan_infer, train_job

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def pipeline(name: str = "p") -> Pipeline:
    text = (
        f"name: {name}\nquery: up\nstep: 1m\n"
        "model: {name: SeasonalNaive, params: {season_length: 12}}\n"
        "infer: {context: 1h, max_catchup: 30m}\n"
    )
    return Pipeline.model_validate(yaml.safe_load(text))


# --- jobs ----------------------------------------------------------------------------------------


def test_a_job_survives_json_and_its_pipeline_keeps_its_hash() -> None:
    p = pipeline()
    job = Job(
        "infer",
        p.name,
        p.model_dump_json(),
        p.config_hash(),
        T0,
        model_version=3,
        first=T0 - timedelta(minutes=5),
        last=T0,
        shard=1,
        shards=4,
    )
    back = Job.from_json(job.to_json())
    assert back == job
    assert back.name == "infer:p#1/4"
    assert Pipeline.model_validate_json(back.definition).config_hash() == p.config_hash()
    assert train_job(p, T0).name == "train:p"


def test_a_job_from_a_newer_scheduler_is_refused_by_name() -> None:
    text = train_job(pipeline(), T0).to_json().replace('"shard"', '"priority":1,"shard"')
    with pytest.raises(ValueError, match="unknown job fields \\['priority'\\]"):
        Job.from_json(text)


def test_a_result_survives_json_and_ignores_fields_it_does_not_know() -> None:
    result = JobResult("failed", "boom", series_in=3, needs_retrain=True, worker="h:1")
    assert JobResult.from_json(result.to_json()) == result
    assert JobResult.from_json('{"status": "ok", "new_field": 1}') == JobResult("ok")


def test_a_worker_refuses_a_definition_that_does_not_match_its_hash(tmp_path: Path) -> None:
    job = train_job(pipeline(), T0)
    forged = Job("train", "p", job.definition.replace('"up"', '"down"'), job.config_hash, T0)
    runner = JobRunner(lambda: None, keep_models=1)  # type: ignore[arg-type,return-value]
    result = runner.run(forged)
    assert result.status == "failed"
    assert "does not match its hash" in (result.error or "")
    assert not result.retryable


# --- shards --------------------------------------------------------------------------------------


def test_shard_counts() -> None:
    assert [shard_count(n, 1000) for n in (0, 1, 1000, 1001, 3000, 10_000)] == [1, 1, 1, 2, 3, 10]
    with pytest.raises(ValueError, match="per_shard"):
        shard_count(10, 0)


def test_shards_are_stable_balanced_and_partition_the_series() -> None:
    ids = [series_id({"__name__": "up", "host": f"h{i}"}) for i in range(6000)]
    owners = [shard_of(uid, 6) for uid in ids]
    # Stable across processes, machines and releases (blake2b, not Python's salted hash):
    # pinned, because changing it would move every series to another worker's cold cache.
    assert owners[:8] == [5, 3, 5, 4, 3, 4, 1, 2]
    counts = np.bincount(owners, minlength=6)
    assert counts.sum() == 6000
    assert counts.min() > 850  # about 1000 each
    assert counts.max() < 1150
    masks = [in_shard(ids, k, 6) for k in range(6)]
    assert (np.sum(masks, axis=0) == 1).all()  # every series in exactly one shard
    assert all(shard_of(uid, 1) == 0 for uid in ids[:10])


# --- planning and combining ---------------------------------------------------------------------


def model_record(series: int, version: int = 1) -> ModelRecord:
    return ModelRecord(
        pipeline="p",
        version=0,
        config_hash="h",
        engine="statsforecast",
        artifact=ArtifactRef(f"file:///m/{version}.bin", "ab" * 32, 1),
        created=T0,
        series_count=series,
        train_start=T0 - timedelta(days=1),
        train_end=T0,
        fit_seconds=1.0,
    )


def test_plan_infer_splits_by_the_models_series_and_resumes_at_the_watermark(
    tmp_path: Path,
) -> None:
    registry = SqlRegistry(f"sqlite:///{tmp_path / 'r.db'}")
    p = pipeline()
    try:
        assert plan_infer(p, registry, T0, timedelta(0), shard_series=1000) is None  # no model
        registry.add_model(model_record(2500))
        registry.set_watermark("p", T0 - timedelta(minutes=3))
        plan = plan_infer(p, registry, T0, timedelta(0), shard_series=1000)
        assert plan is not None
        assert [(j.shard, j.shards) for j in plan.jobs] == [(0, 3), (1, 3), (2, 3)]
        assert {(j.first, j.last, j.model_version) for j in plan.jobs} == {
            (T0 - timedelta(minutes=2), T0, 1)
        }
        assert plan.last == T0
        light = plan_infer(p, registry, T0, timedelta(0))
        assert light is not None
        assert [(j.shard, j.shards) for j in light.jobs] == [(0, 1)]
        registry.set_watermark("p", T0)
        idle = plan_infer(p, registry, T0, timedelta(0), shard_series=1000)
        assert idle is not None
        assert idle.jobs == []  # nothing new to score
    finally:
        registry.close()


def test_combine_sums_counts_and_names_the_failures() -> None:
    ok = JobResult("ok", series_in=10, series_scored=9, series_skipped=1, samples_written=36)
    counts, error, retrain = combine([ok, ok])
    assert counts == {
        "series_in": 20,
        "series_scored": 18,
        "series_skipped": 2,
        "samples_written": 72,
    }
    assert (error, retrain) == (None, False)
    bad = JobResult("failed", "TSDBUnavailable: down")
    _, error, _ = combine([ok, bad, bad])
    assert error == "2 of 3 shards failed: TSDBUnavailable: down"
    _, error, retrain = combine([JobResult("failed", "gone", needs_retrain=True)])
    assert (error, retrain) == ("gone", True)


# --- context cache shards -----------------------------------------------------------------------


class CountingReader:
    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.calls = 0

    def query_range(self, query, start, end, step, *, max_series=None):  # type: ignore[no-untyped-def]
        self.calls += 1
        data = self.frame[(self.frame["ds"] >= start) & (self.frame["ds"] <= end)]
        data = data.reset_index(drop=True)
        ids = data["unique_id"].unique()
        return SeriesFrame(data, {uid: {"host": uid} for uid in ids})


def test_the_shards_of_a_cycle_share_one_read_and_partition_its_series() -> None:
    ds = pd.date_range(T0 - timedelta(hours=2), T0, freq="1min", tz="UTC")
    ids = sorted(f"s{i:03d}" for i in range(50))
    frame = pd.DataFrame(
        {
            "unique_id": np.repeat(ids, len(ds)),
            "ds": np.tile(ds, len(ids)),
            "y": np.arange(len(ids) * len(ds), dtype=float),
        }
    )
    reader = CountingReader(frame)
    cache = ContextCache()
    p = pipeline()
    start = T0 - timedelta(hours=1)
    parts = [cache.read(reader, p, 1, start, T0, shard=(k, 3)) for k in range(3)]
    assert reader.calls == 1  # one TSDB read for the three shards
    assert cache.reused_reads == 2
    seen = [uid for part in parts for uid in part.labels]
    assert sorted(seen) == ids  # each series in exactly one shard
    whole = cache.read(reader, p, 1, start, T0)
    for k, part in enumerate(parts):
        assert set(part.data["unique_id"]) == set(part.labels)
        assert all(shard_of(uid, 3) == k for uid in part.labels)
        expected = whole.data[whole.data["unique_id"].isin(part.labels)]
        pd.testing.assert_frame_equal(part.data, expected.reset_index(drop=True))


# --- settings and the thread pool ---------------------------------------------------------------


def test_celery_settings_need_a_broker_and_a_long_enough_visibility_timeout() -> None:
    with pytest.raises(ValidationError, match="needs broker_url"):
        Settings.model_validate({"dispatcher": {"kind": "celery"}})
    with pytest.raises(ValidationError, match=r"visibility_timeout .* must be longer"):
        Settings.model_validate(
            {
                "dispatcher": {
                    "kind": "celery",
                    "broker_url": "redis://r",
                    "visibility_timeout": "10m",
                },
                "jobs": {"train_timeout": "1h"},
            }
        )
    with pytest.raises(ValidationError, match="lease_ttl must be at least 3s"):
        Settings.model_validate({"dispatcher": {"lease_ttl": "1s"}})
    ok = Settings.model_validate({"dispatcher": {"kind": "celery", "broker_url": "redis://r"}})
    assert ok.visibility_timeout == timedelta(hours=1, minutes=5)  # train_timeout + 5m
    assert "redis://r" not in repr(ok.dispatcher)  # may hold a password: masked


def test_the_thread_pool_runs_jobs_with_its_runner() -> None:
    seen: list[str] = []

    def run(job: Job) -> JobResult:
        seen.append(job.name)
        return JobResult("ok", series_scored=len(seen))

    pool = ThreadPoolDispatcher(2, run)
    try:
        job = train_job(pipeline(), T0)
        assert pool.submit(job).result(5) == JobResult("ok", series_scored=1)
        assert seen == ["train:p"]
    finally:
        pool.shutdown(1)


def test_shards_reading_at_once_in_one_process_share_one_query() -> None:
    ds = pd.date_range(T0 - timedelta(hours=1), T0, freq="1min", tz="UTC")
    ids = [f"s{i:02d}" for i in range(20)]
    frame = pd.DataFrame(
        {"unique_id": np.repeat(ids, len(ds)), "ds": np.tile(ds, len(ids)), "y": 1.0}
    )

    class SlowReader(CountingReader):
        def query_range(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            time.sleep(0.2)  # long enough for every thread to arrive while it reads
            return super().query_range(*args, **kwargs)

    reader = SlowReader(frame)
    cache = ContextCache()
    start = T0 - timedelta(minutes=30)
    with ThreadPoolExecutor(4) as pool:
        parts = list(
            pool.map(lambda k: cache.read(reader, pipeline(), 1, start, T0, shard=(k, 4)), range(4))
        )
    assert reader.calls == 1
    assert sorted(uid for part in parts for uid in part.labels) == ids

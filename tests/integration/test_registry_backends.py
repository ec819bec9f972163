"""The registry and the scheduler lease on both backends: a SQLite file and a real PostgreSQL
(cluster mode's shared registry). Same SQLAlchemy code, same migrations, same behaviour."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from openanomaly.adapters.model_registry import SqlRegistry, schema
from openanomaly.adapters.model_registry.lease import SqlLease
from openanomaly.ports import ArtifactRef, ModelRecord, RunRecord

pytestmark = pytest.mark.integration
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    database: str = request.getfixturevalue("pg_database")
    return database


@pytest.fixture
def reg(url: str) -> Iterator[SqlRegistry]:
    registry = SqlRegistry(url)
    yield registry
    registry.close()


def model(n: int = 0) -> ModelRecord:
    return ModelRecord(
        pipeline="p",
        version=0,
        config_hash=f"h{n}",
        engine="statsforecast",
        artifact=ArtifactRef(f"file:///m/{n}.bin", "ab" * 32, 10),
        created=T0,
        series_count=5,
        train_start=T0 - timedelta(days=1),
        train_end=T0,
        fit_seconds=1.0,
    )


def test_the_schema_is_current_and_reopening_applies_nothing(url: str) -> None:
    first = SqlRegistry(url)
    assert first.schema_version() == len(schema.MIGRATIONS)
    first.close()
    again = SqlRegistry(url)
    assert again.schema_version() == len(schema.MIGRATIONS)
    again.close()


def test_concurrent_writers_get_distinct_versions_and_one_active_model(
    reg: SqlRegistry, url: str
) -> None:
    versions: list[int] = []
    lock = threading.Lock()

    def add(k: int) -> None:
        own = SqlRegistry(url)  # its own connection pool, as another process would have
        try:
            for n in range(5):
                got = own.add_model(model(k * 10 + n)).version
                with lock:
                    versions.append(got)
        finally:
            own.close()

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(versions) == list(range(1, 21))
    active = reg.active_model("p")
    assert active is not None
    assert active.version == 20
    assert [m.status for m in reg.models("p")].count("active") == 1
    assert reg.model("p", 7) is not None
    assert reg.model("p", 99) is None


def test_runs_and_watermarks(reg: SqlRegistry) -> None:
    run = reg.start_run(RunRecord("p", "infer", T0, T0))
    reg.finish_run(RunRecord("p", "infer", T0, T0, T0, "ok", id=run.id, series_scored=3))
    assert [(r.status, r.series_scored) for r in reg.runs("p")] == [("ok", 3)]
    assert reg.set_watermark("p", T0)
    assert reg.set_watermark("p", T0 - timedelta(hours=1))  # unfenced: may move back
    assert reg.watermark("p") == T0 - timedelta(hours=1)


def test_one_leader_at_a_time_with_a_growing_fence(reg: SqlRegistry) -> None:
    a = SqlLease(reg, timedelta(seconds=1), holder="a")
    b = SqlLease(reg, timedelta(seconds=1), holder="b")
    first = a.acquire()
    assert (first.leader, first.fence) == (True, 1)
    blocked = b.acquire()
    assert (blocked.leader, blocked.holder, blocked.fence, b.fence) == (False, "a", 1, 0)
    renewed = a.acquire()
    assert (renewed.leader, renewed.fence) == (True, 1)  # renewing keeps the token

    time.sleep(1.2)  # a stops renewing: its lease expires (the database's clock)
    taken = b.acquire()
    assert (taken.leader, taken.fence) == (True, 2)
    lost = a.acquire()
    assert (lost.leader, lost.holder, a.fence) == (False, "b", 0)

    b.release()  # a clean shutdown hands over at once
    back = a.acquire()
    assert (back.leader, back.fence) == (True, 3)


def test_only_the_current_fence_moves_a_watermark_and_only_forward(reg: SqlRegistry) -> None:
    a = SqlLease(reg, timedelta(seconds=30), holder="a")
    assert a.acquire().leader
    assert reg.set_watermark("p", T0, fence=a.fence)
    assert reg.set_watermark("p", T0 - timedelta(minutes=5), fence=a.fence)  # a re-run: no-op
    assert reg.watermark("p") == T0
    stale = a.fence
    a.release()
    b = SqlLease(reg, timedelta(seconds=30), holder="b")
    assert b.acquire().fence == stale + 1
    assert not reg.set_watermark("p", T0 + timedelta(minutes=1), fence=stale)  # refused
    assert reg.watermark("p") == T0
    assert reg.set_watermark("p", T0 + timedelta(minutes=1), fence=b.fence)
    assert reg.watermark("p") == T0 + timedelta(minutes=1)


def test_racing_schedulers_elect_exactly_one(reg: SqlRegistry, url: str) -> None:
    results: list[bool] = []
    barrier = threading.Barrier(6)
    lock = threading.Lock()

    def race(k: int) -> None:
        own = SqlRegistry(url)
        try:
            lease = SqlLease(own, timedelta(seconds=30), holder=f"s{k}")
            barrier.wait()
            leader = lease.acquire().leader
            with lock:
                results.append(leader)
        finally:
            own.close()

    threads = [threading.Thread(target=race, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False] * 5 + [True]

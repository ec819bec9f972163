"""Cluster mode against real servers: Redis (broker), PostgreSQL (registry), VictoriaMetrics,
and real `openanomaly worker` and `openanomaly run --dispatcher celery` processes.

1. A 3,000-series pipeline split into 3 shards across 2 workers writes exactly the samples
   light mode writes, and re-running its window rewrites identical values.
2. A worker SIGKILLed mid-job: the job is redelivered to the other worker and completes.
3. The leading scheduler SIGKILLed: the standby leads within the lease TTL, and every point
   is scored once, with one value, none skipped.
4. The broker down for a while: /metrics shows it, scheduling resumes when it is back, and
   the points of the outage are scored afterwards.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from openanomaly.adapters.job_dispatcher.celery import CeleryDispatcher
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.bootstrap import App, build
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.settings import RemoteWriteSettings, Settings, TSDBSettings
from openanomaly.config.settings_loader import load_settings
from openanomaly.domain.labels import output_labels
from openanomaly.local_tsdb import LocalTSDB
from openanomaly.ports import OutputSeries
from openanomaly.usecases.common import ModelCache, floor_to_step
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.infer import infer
from openanomaly.usecases.jobs import plan_infer, train_job
from openanomaly.usecases.train import train
from tests.cluster_harness import Worker, cluster_settings
from tests.conftest import RedisFactory
from tests.daemon_harness import Daemon, minute_floor, utc_now, wait_for
from tests.services import LocalPostgres, LocalRedis

pytestmark = pytest.mark.integration

SERIES = 3000
SHARD = 1000


def pipeline(name: str, metric: str, step: str = "1m", season: int = 12) -> Pipeline:
    text = (
        f"name: {name}\nquery: {metric}\nstep: {step}\n"
        f"model: {{name: SeasonalNaive, params: {{season_length: {season}}}}}\n"
        "train: {window: 1d, every: 1h}\n"
        "infer: {every: %s, context: 1h, max_catchup: 30m}\n"
        "scoring: {holdoff: 0s}\n"
    ) % step
    return Pipeline.model_validate(yaml.safe_load(text))


def seed(url: str, metric: str, hosts: int, end: datetime, *, step: timedelta, points: int) -> None:
    """A 12-step wave, noise and a few spikes per host, up to `end` (which may be ahead of now:
    live data for the daemons to score as time passes)."""
    rng = np.random.default_rng(11)
    start_ms = int((end - step * (points - 1)).timestamp() * 1000)
    ts = start_ms + np.arange(points, dtype=np.int64) * int(step.total_seconds() * 1000)
    wave = 5 * np.sin(2 * np.pi * np.arange(points) / 12)
    series = []
    for h in range(hosts):
        values = 100 + h % 50 + wave + rng.normal(0, 1, points)
        values[rng.integers(0, points, 2)] += 15
        series.append(OutputSeries(output_labels(metric, {"host": f"h{h:04d}"}, {}), ts, values))
    outbox = Path(tempfile.mkdtemp(prefix="oa-seed-"))
    writer = RemoteWriteWriter(
        TSDBSettings(url=url), RemoteWriteSettings(max_samples_per_request=100_000), outbox
    )
    try:
        result = writer.write(series)
    finally:
        writer.close(1)
    assert result.accepted == hosts * points, result


def export(url: str, selector: str, start: datetime, end: datetime) -> dict[tuple[Any, ...], Any]:
    """{(labels without `pipeline`): {ts_ms: {values}}} from VictoriaMetrics' raw export."""
    response = httpx.get(
        url + "/api/v1/export",
        params={"match[]": selector, "start": int(start.timestamp()), "end": int(end.timestamp())},
        timeout=60,
        trust_env=False,
    )
    response.raise_for_status()
    out: dict[tuple[Any, ...], dict[int, set[float]]] = {}
    for line in response.text.splitlines():
        item = json.loads(line)
        labels = tuple(sorted((k, v) for k, v in item["metric"].items() if k != "pipeline"))
        samples = out.setdefault(labels, {})
        for ts, value in zip(item["timestamps"], item["values"], strict=True):
            samples.setdefault(ts, set()).add(value)
    return out


def assert_same(got: dict[Any, Any], want: dict[Any, Any]) -> None:
    """Equal exports, or a short account of how they differ (pytest's diff of a million
    samples would take minutes)."""
    assert got.keys() == want.keys(), (
        f"{len(got.keys() - want.keys())} series extra, e.g. {sorted(got.keys() - want.keys())[:2]}; "
        f"{len(want.keys() - got.keys())} missing, e.g. {sorted(want.keys() - got.keys())[:2]}"
    )
    differ = [k for k in want if got[k] != want[k]]
    if differ:
        key = differ[0]
        stamps = sorted(
            set(got[key]) ^ set(want[key]) or [t for t in want[key] if got[key][t] != want[key][t]]
        )
        detail = [(t, got[key].get(t), want[key].get(t)) for t in stamps[:3]]
        raise AssertionError(f"{len(differ)} series differ, e.g. {key}: {detail}")


@dataclass
class Cluster:
    vm: LocalTSDB
    redis: LocalRedis
    config: Path
    settings: Settings
    app: App
    dispatcher: CeleryDispatcher
    workers: list[Worker]
    end: datetime


@pytest.fixture(scope="module")
def cluster(
    victoria_metrics: LocalTSDB,
    redis_server: LocalRedis,
    postgres_server: LocalPostgres,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    registry = postgres_server.fresh_database("cluster_shards")
    config = cluster_settings(
        tmp / "openanomaly.yaml",
        tsdb_url=victoria_metrics.url,
        broker_url=redis_server.url,
        registry_url=registry,
        artifacts_dir=tmp / "artifacts",
        shard_series=SHARD,
        infer_timeout="10s",
        train_timeout="10s",
        visibility_timeout="12s",  # short, so the redelivery test is quick
    )
    settings = load_settings(config).settings
    end = minute_floor(utc_now()) - timedelta(minutes=2)
    seed(
        victoria_metrics.url, "oa_cluster_load", SERIES, end, step=timedelta(minutes=1), points=240
    )
    victoria_metrics.flush()
    workers = [Worker(tmp, config, f"w{k}").start() for k in range(2)]
    app = build(settings, clock=lambda: end)
    dispatcher = CeleryDispatcher(settings)
    try:
        yield Cluster(
            victoria_metrics, redis_server, config, settings, app, dispatcher, workers, end
        )
    finally:
        dispatcher.shutdown(1)
        for worker in workers:
            worker.kill()
        app.close(1)


def test_shards_across_two_workers_score_like_light_mode(cluster: Cluster, tmp_path: Path) -> None:
    end, vm = cluster.end, cluster.vm
    # Light mode, in this process, as `openanomaly run` without a dispatcher would do it.
    light = pipeline("oa-light", "oa_cluster_load")
    settings = Settings.model_validate(
        {"tsdb": {"url": vm.url, "query_delay": "0s"}, "storage": {"data_dir": str(tmp_path)}}
    )
    local = build(settings, clock=lambda: end)
    try:
        assert train(light, local.ports()).status == "ok"
        ran = infer(light, local.ports(), ModelCache(), contexts=ContextCache())
        assert ran.run.status == "ok", ran.run.error
    finally:
        local.close(1)

    # Cluster mode: train on a worker, score in shards on both workers, commit the watermark.
    sharded = pipeline("oa-sharded", "oa_cluster_load")
    trained = cluster.dispatcher.submit(train_job(sharded, end)).result(120)
    assert trained.status == "ok", trained.error
    plan = plan_infer(sharded, cluster.app.registry, end, timedelta(0), shard_series=SHARD)
    assert plan is not None
    assert [(j.shard, j.shards) for j in plan.jobs] == [(0, 3), (1, 3), (2, 3)]
    results = [f.result(120) for f in [cluster.dispatcher.submit(j) for j in plan.jobs]]
    assert [r.status for r in results] == ["ok"] * 3, [r.error for r in results]
    assert sum(r.series_scored for r in results) == SERIES
    assert all(abs(r.series_scored - SERIES / 3) < SERIES / 10 for r in results)  # balanced
    assert len({r.worker for r in results}) == 2, "both workers took shards"
    assert cluster.app.registry.set_watermark(sharded.name, plan.last)
    vm.flush()

    start = end - timedelta(hours=1)
    want = export(vm.url, '{pipeline="oa-light"}', start, end + timedelta(minutes=1))
    got = export(vm.url, '{pipeline="oa-sharded"}', start, end + timedelta(minutes=1))
    assert len(want) >= 4 * SERIES * 0.99  # score, yhat and the band for (nearly) every series
    assert_same(got, want)

    # Re-running the window (a redelivery, a retry) rewrites the same values.
    again = [f.result(120) for f in [cluster.dispatcher.submit(j) for j in plan.jobs]]
    assert [r.status for r in again] == ["ok"] * 3
    vm.flush()
    rerun = export(vm.url, '{pipeline="oa-sharded"}', start, end + timedelta(minutes=1))
    assert_same(rerun, want)  # one value per timestamp, the same


def test_a_worker_killed_mid_job_is_redelivered_and_completes(cluster: Cluster) -> None:
    job = train_job(pipeline("oa-redelivered", "oa_cluster_load"), cluster.end)
    before = [w.received() for w in cluster.workers]
    future = cluster.dispatcher.submit(job)
    taker = wait_for(
        "a worker to take the job",
        lambda: next(
            (w for w, n in zip(cluster.workers, before, strict=True) if w.received() > n), None
        ),
        timeout=30,
        interval=0.01,
    )
    taker.kill()
    assert not future.done(), "the job finished before the kill; it must be killed mid-job"
    other = next(w for w in cluster.workers if w is not taker)
    result = future.result(90)  # visibility timeout 12s, then redelivered
    assert result.status == "ok", result.error
    assert result.worker.endswith(f":{other.pid}")
    model = cluster.app.registry.active_model("oa-redelivered")
    assert model is not None
    assert model.series_count == SERIES
    cluster.workers.remove(taker)
    cluster.workers.append(Worker(taker.workdir.parent, cluster.config, "w-replacement").start())


# --- schedulers: leader failover and broker outage ---------------------------------------------

STEP = timedelta(seconds=10)


def live_pipeline_yaml(name: str, metric: str) -> str:
    return (
        f"name: {name}\nquery: {metric}\nstep: 10s\n"
        "model: {name: SeasonalNaive, params: {season_length: 6}}\n"
        "train: {window: 1d, every: 1h}\n"
        "infer: {every: 10s, context: 10m, max_catchup: 5m}\n"
        "scoring: {holdoff: 0s}\n"
    )


def scheduler(
    tmp: Path, tag: str, vm: LocalTSDB, redis_url: str, *, registry: str, artifacts: Path
) -> Daemon:
    return Daemon(
        tmp / tag,
        vm.url,
        settings=[
            # VictoriaMetrics shows a point only 30s after its timestamp (-search.latencyOffset);
            # scoring earlier would score a stand-in value and rescore it later, differently.
            "tsdb.query_delay=35s",
            "dispatcher.kind=celery",
            f"dispatcher.broker_url={redis_url}",
            "dispatcher.lease_ttl=3s",
            f"storage.registry_url={registry}",
            f"storage.artifacts_url=file://{artifacts}",
            "jobs.infer_timeout=8s",
            "jobs.train_timeout=60s",
        ],
    )


def ok_infers(daemon: Daemon, name: str, after: datetime | None = None) -> list[dict[str, Any]]:
    runs = [r for r in daemon.finished_runs(name, "infer") if r["status"] == "ok"]
    if after is not None:
        runs = [r for r in runs if datetime.fromisoformat(r["started"]) > after]
    return runs


def assert_scored_once_without_gaps(vm: LocalTSDB, name: str, start: datetime, end: datetime):
    """Every 10s point of every series in [start, end] has exactly one score value."""
    vm.flush()
    scores = export(vm.url, f'{{__name__=~".*_score", pipeline="{name}"}}', start, end)
    assert len(scores) == 3, scores.keys()
    step_ms = int(STEP.total_seconds() * 1000)
    first = int(floor_to_step(start, STEP).timestamp() * 1000) + step_ms
    last = int(end.timestamp() * 1000)
    expected = set(range(first, last + 1, step_ms))
    for labels, samples in scores.items():
        missing = expected - set(samples)
        assert not missing, f"{labels}: {len(missing)} points never scored"
        conflicting = {ts: v for ts, v in samples.items() if len(v) > 1}
        assert not conflicting, f"{labels}: scored twice with different values {conflicting}"


def seed_live(victoria_metrics: LocalTSDB, metric: str) -> str:
    now = utc_now()
    end = now.replace(second=now.second // 10 * 10, microsecond=0) + timedelta(minutes=15)
    seed(
        victoria_metrics.url, metric, 3, end, step=STEP, points=6 * 60 * 2
    )  # 2h, a quarter in the future
    victoria_metrics.flush()
    return metric


def test_the_standby_takes_over_when_the_leader_is_killed(
    victoria_metrics: LocalTSDB,
    redis_factory: RedisFactory,
    pg_database: str,
    tmp_path: Path,
) -> None:
    vm, name = victoria_metrics, "oa-failover"
    # A broker of its own: the module's workers (other settings) must not take these jobs.
    redis_server = redis_factory()
    live = seed_live(vm, "oa_live_failover")
    config = cluster_settings(
        tmp_path / "openanomaly.yaml",
        tsdb_url=vm.url,
        broker_url=redis_server.url,
        registry_url=pg_database,
        artifacts_dir=tmp_path / "artifacts",
        infer_timeout="8s",
    )
    worker = Worker(tmp_path, config, "w").start()
    a = scheduler(
        tmp_path, "a", vm, redis_server.url, registry=pg_database, artifacts=tmp_path / "artifacts"
    )
    b = scheduler(
        tmp_path, "b", vm, redis_server.url, registry=pg_database, artifacts=tmp_path / "artifacts"
    )
    try:
        for daemon in (a, b):
            (daemon.pipelines_dir / f"{name}.yaml").write_text(live_pipeline_yaml(name, live))
        a.start()
        wait_for("a to lead", lambda: a.metric("openanomaly_leader") == 1, timeout=10)
        b.start()
        assert b.metric("openanomaly_leader") == 0
        refused = b.post(f"/api/v1/pipelines/{name}/infer", b.token)
        assert refused.status_code == 409, refused.text  # a standby runs nothing
        wait_for("two infer cycles on a", lambda: len(ok_infers(a, name)) >= 2, timeout=120)

        a.kill()
        killed = utc_now()
        wait_for("b to lead", lambda: b.metric("openanomaly_leader") == 1, timeout=15)
        took = (utc_now() - killed).total_seconds()
        assert took <= 3 + 1 + 2, f"took over after {took:.1f}s (TTL 3s, renewed every 1s)"
        wait_for("two infer cycles on b", lambda: len(ok_infers(b, name, killed)) >= 2, timeout=60)
        runs = ok_infers(b, name)
        oldest = min(datetime.fromisoformat(r["scheduled"]) for r in runs)
        watermark = b.json(f"/api/v1/pipelines/{name}")["watermark"]
        assert_scored_once_without_gaps(
            vm, name, oldest - timedelta(minutes=4), datetime.fromisoformat(watermark)
        )
    finally:
        for daemon in (a, b):  # shown by pytest when the test failed
            print(f"--- scheduler {daemon.workdir.name}:\n{daemon.log_text()[-4000:]}")
            daemon.close()
        worker.kill()


def test_a_broker_outage_shows_in_metrics_and_scheduling_resumes(
    victoria_metrics: LocalTSDB,
    redis_factory: RedisFactory,
    pg_database: str,
    tmp_path: Path,
) -> None:
    vm, name = victoria_metrics, "oa-outage"
    live = seed_live(vm, "oa_live_outage")
    redis = redis_factory()
    config = cluster_settings(
        tmp_path / "openanomaly.yaml",
        tsdb_url=vm.url,
        broker_url=redis.url,
        registry_url=pg_database,
        artifacts_dir=tmp_path / "artifacts",
        infer_timeout="8s",
    )
    worker = Worker(tmp_path, config, "w").start()
    daemon = scheduler(
        tmp_path, "a", vm, redis.url, registry=pg_database, artifacts=tmp_path / "artifacts"
    )
    try:
        (daemon.pipelines_dir / f"{name}.yaml").write_text(live_pipeline_yaml(name, live))
        daemon.start()
        wait_for("two infer cycles", lambda: len(ok_infers(daemon, name)) >= 2, timeout=120)
        before = daemon.json(f"/api/v1/pipelines/{name}")["watermark"]

        redis.stop()
        wait_for(
            "the outage in /metrics",
            lambda: daemon.metric("openanomaly_dispatcher_up") == 0,
            timeout=40,
        )
        assert (daemon.metric("openanomaly_dispatch_errors_total") or 0) >= 1
        time.sleep(10)
        redis.start()
        back = utc_now()
        wait_for(
            "an infer cycle after the outage",
            lambda: len(ok_infers(daemon, name, back)) >= 1,
            timeout=90,
        )
        assert daemon.metric("openanomaly_dispatcher_up") == 1
        watermark = daemon.json(f"/api/v1/pipelines/{name}")["watermark"]
        assert watermark > before
        assert_scored_once_without_gaps(
            vm,
            name,
            datetime.fromisoformat(before) - timedelta(minutes=1),
            datetime.fromisoformat(watermark),
        )
    finally:
        print(f"--- scheduler:\n{daemon.log_text()[-4000:]}")  # shown when the test failed
        daemon.close()
        worker.kill()

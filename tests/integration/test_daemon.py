"""`openanomaly run` as a real subprocess against real TSDBs: scheduling, the HTTP API, crash
recovery, TSDB outages and hot reload of the pipeline files.

Each test seeds its own metric (3 days at 1m of 3 series: a 12-step wave plus N(0, 1) noise,
+12 sigma spikes on host b) into the shared session TSDB and starts its own daemon on a fresh
data directory. Runs are started through the API (POST .../infer) rather than by waiting for
the minute boundary, except where a test needs time to pass.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.config.settings import TSDBSettings
from openanomaly.local_tsdb import LocalTSDB
from tests.conftest import TSDBFactory
from tests.daemon_harness import (
    HOSTS,
    SPIKE_HOST,
    STEP,
    TOKEN,
    Daemon,
    HoldingProxy,
    export,
    minute_floor,
    pipeline_yaml,
    seed,
    utc_now,
    wait_for,
)

pytestmark = pytest.mark.integration

FUTURE = timedelta(minutes=30)  # seeded past "now", so every later infer finds its points
SAMPLES_PER_POINT = len(HOSTS) * 4  # score, yhat, yhat_lower, yhat_upper per host
CATCHUP_POINTS = 60  # infer.max_catchup 1h at 1m

DaemonFactory = Callable[..., Daemon]


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[DaemonFactory]:
    """Daemon handles (not started); every child process is killed at teardown."""
    made: list[Daemon] = []

    def make(tsdb_url: str, *settings: str, workdir: Path | None = None) -> Daemon:
        daemon = Daemon(workdir or tmp_path / f"daemon-{len(made)}", tsdb_url, settings=settings)
        made.append(daemon)
        return daemon

    yield make
    for daemon in made:
        daemon.close()


def seeded(tsdb_url: str, metric: str, tmp_path: Path) -> tuple[datetime, list[datetime]]:
    """Seed `metric`; returns (now floored to the minute, the spike times)."""
    now = minute_floor(utc_now())
    spikes = [now - timedelta(minutes=m) for m in (33, 21, 8)]
    seed(tsdb_url, metric, end=now + FUTURE, spikes=spikes, outbox_dir=tmp_path / "seed-outbox")
    return now, spikes


def score_points(
    tsdb_url: str, name: str, start: datetime, end: datetime
) -> dict[str, dict[datetime, float]]:
    """anomaly_score of pipeline `name` at 1m through our own reader: {host: {ds: value}}."""
    reader = PrometheusReader(TSDBSettings(url=tsdb_url))
    try:
        frame = reader.query_range(f'anomaly_score{{pipeline="{name}"}}', start, end, STEP)
    finally:
        reader.close()
    out: dict[str, dict[datetime, float]] = {}
    for uid, labels in frame.labels.items():
        rows = frame.data[frame.data["unique_id"] == uid]
        out[labels["host"]] = {
            ds.to_pydatetime(): y for ds, y in zip(rows["ds"], rows["y"], strict=True)
        }
    return out


def settle(value: Callable[[], object], quiet: float = 0.5) -> None:
    """Wait until `value()` has not changed for `quiet` seconds."""
    last, since = value(), time.monotonic()
    while time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = value()
        if now != last:
            last, since = now, time.monotonic()


def no_errors(daemon: Daemon, allowed: tuple[str, ...] = ()) -> None:
    bad = [
        e
        for e in daemon.logs
        if e.get("raw") or e.get("level") in ("error", "critical") or "exc" in e
    ]
    bad = [e for e in bad if not any(a in str(e.get("msg")) for a in allowed)]
    assert not bad, "\n".join(f"{e.get('msg')}\n{e.get('exc', '')}" for e in bad)


# --- 1. end to end ----------------------------------------------------------------------------


def test_daemon_trains_scores_and_serves_its_api(
    tsdb: LocalTSDB, tmp_path: Path, daemons: DaemonFactory
) -> None:
    kind = tsdb.binary_name.replace("-", "_")
    metric, name = f"oa_daemon_e2e_{kind}", f"e2e-{kind.replace('_', '-')}"
    _, spikes = seeded(tsdb.url, metric, tmp_path)
    tsdb.flush()
    daemon = daemons(tsdb.url)
    (daemon.pipelines_dir / f"{name}.yaml").write_text(pipeline_yaml(name, metric))
    daemon.start()

    # Before any run: the API answers, writes need the token.
    listed = daemon.json("/api/v1/pipelines")
    assert [p["name"] for p in listed["pipelines"]] == [name]
    assert listed["problems"] == []
    assert daemon.get("/openapi.json").json()["info"]["title"] == "OpenAnomaly"
    assert daemon.post(f"/api/v1/pipelines/{name}/infer").status_code == 401
    assert daemon.post(f"/api/v1/pipelines/{name}/infer", "wrong-token").status_code == 401
    assert daemon.post("/api/v1/pipelines/nope/infer", TOKEN).status_code == 404

    train = daemon.run_after(name, "train", 0, timeout=120)
    assert train["status"] == "ok", train
    assert train["series_scored"] == len(HOSTS)
    infer = daemon.infer_now(name)
    assert infer["status"] == "ok", infer
    first = daemon.finished_runs(name, "infer")[-1]  # the oldest: a full catch-up
    assert first["status"] == "ok", first
    assert first["samples_written"] == CATCHUP_POINTS * SAMPLES_PER_POINT
    assert first["series_scored"] == len(HOSTS)

    state = daemon.json(f"/api/v1/pipelines/{name}")
    # A run started by hand leaves the schedule on the step grid.
    next_infer = datetime.fromisoformat(state["next_run"]["infer"])
    assert next_infer == minute_floor(next_infer), state["next_run"]
    assert state["model"] == 1
    assert state["model_stale"] is False
    watermark = datetime.fromisoformat(state["watermark"])
    assert watermark >= max(spikes)
    models = daemon.json(f"/api/v1/models?pipeline={name}")["models"]
    assert [(m["version"], m["status"]) for m in models] == [(1, "active")]

    tsdb.flush()
    start = min(spikes) - timedelta(minutes=20)
    got = score_points(tsdb.url, name, start, watermark)
    assert set(got) == set(HOSTS)
    expected = {start + i * STEP for i in range(int((watermark - start) / STEP) + 1)}
    flagged: list[float] = []
    normal: list[float] = []
    for host, points in got.items():
        assert set(points) == expected, f"{host}: scores missing or extra"
        for ds, value in points.items():
            (flagged if host == SPIKE_HOST and ds in spikes else normal).append(value)
    assert len(flagged) == len(spikes)
    assert min(flagged) > 1, flagged
    assert np.mean(np.array(normal) <= 1) >= 0.97, sorted(normal)[-10:]

    assert daemon.metric("openanomaly_runs_total", pipeline=name, kind="train", status="ok") == 1
    infers = daemon.metric("openanomaly_runs_total", pipeline=name, kind="infer", status="ok")
    assert infers is not None
    assert infers >= 1
    assert daemon.metric("openanomaly_pipelines") == 1
    assert daemon.metric("openanomaly_config_last_reload_successful") == 1
    written = daemon.metric("openanomaly_samples_written_total", pipeline=name)
    assert written is not None
    assert written >= CATCHUP_POINTS * SAMPLES_PER_POINT
    ready = daemon.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert daemon.get("/healthz").json() == {"status": "ok"}

    # SIGTERM while a train runs: it finishes within the grace period, then a clean exit.
    assert daemon.post(f"/api/v1/pipelines/{name}/train", TOKEN).status_code == 202
    registry = daemon.registry()

    def trains() -> list[str]:
        return [r.status for r in registry.runs(name) if r.kind == "train"]

    wait_for("the second train to start", lambda: len(trains()) == 2)
    assert daemon.terminate() == 0
    assert daemon.logs[-1]["msg"] == "stopped"
    assert trains() == ["ok", "ok"]
    active = registry.active_model(name)
    registry.close()
    assert active is not None
    assert active.version == 2
    no_errors(daemon)


# --- 2. crash and restart ---------------------------------------------------------------------


def test_a_killed_daemon_resumes_training_and_scoring_without_gaps(
    victoria_metrics: LocalTSDB, tmp_path: Path, daemons: DaemonFactory
) -> None:
    """SIGKILL during a train, then during an infer whose write reached the TSDB but whose
    answer did not reach the daemon; each restart on the same data directory marks the killed
    run interrupted and carries on: training resumes, scoring continues from the watermark,
    and every minute has a score (the re-scored minutes twice, with identical values)."""
    vm = victoria_metrics
    metric, name = "oa_daemon_restart", "restart"
    seeded(vm.url, metric, tmp_path)
    vm.flush()
    with HoldingProxy(vm.url).running() as proxy:
        workdir = tmp_path / "daemon"
        (workdir / "pipelines.d").mkdir(parents=True)
        (workdir / "pipelines.d" / "restart.yaml").write_text(pipeline_yaml(name, metric))

        # A: killed while training (its read is parked in the proxy).
        proxy.hold_reads = True
        first = daemons(proxy.url, workdir=workdir).start()
        registry = first.registry()
        wait_for("the train to read", lambda: proxy.held, timeout=60)
        running = [r for r in registry.runs(name) if r.status == "running"]
        assert [r.kind for r in running] == ["train"]
        first.kill()
        proxy.hold_reads = False
        proxy.release.set()
        assert registry.active_model(name) is None

        # B: marks that train interrupted, trains, scores; killed with a write in flight.
        second = daemons(proxy.url, workdir=workdir).start()
        runs = {r.id: r for r in registry.runs(name)}
        assert runs[running[0].id].status == "interrupted"
        train = second.run_after(name, "train", 1, timeout=120)  # 1: the interrupted one
        assert train["status"] == "ok", train
        model = registry.active_model(name)
        assert model is not None
        assert model.version == 1
        assert second.infer_now(name)["status"] == "ok"
        proxy.release.clear()
        proxy.held.clear()
        proxy.hold_writes = True
        # The next minute's infer (scheduled by the daemon itself) writes and hangs.
        wait_for("an infer write", lambda: proxy.held, timeout=75, interval=0.05)
        settle(lambda: len(proxy.held))  # every lane's request forwarded and parked
        running = [r for r in registry.runs(name) if r.status == "running"]
        assert [r.kind for r in running] == ["infer"]
        assert running[0].scheduled - minute_floor(running[0].scheduled) < timedelta(seconds=5)
        second.kill()
        proxy.hold_writes = False
        proxy.release.set()
        watermark = registry.watermark(name)  # not moved by the killed run
        assert watermark is not None

        # C: marks the infer interrupted, keeps the model, re-scores after the watermark.
        last_id = max(r.id or 0 for r in registry.runs(name))
        third = daemons(proxy.url, workdir=workdir).start()
        assert {r.id: r for r in registry.runs(name)}[running[0].id].status == "interrupted"
        assert third.infer_now(name)["status"] == "ok"
        assert third.terminate() == 0
        after = registry.watermark(name)
        assert after is not None
        assert after > watermark
        rescored = [r for r in registry.runs(name) if (r.id or 0) > last_id]
        assert {(r.kind, r.status) for r in rescored} == {("infer", "ok")}
        minutes = int((after - watermark) / STEP)
        assert sum(r.samples_written for r in rescored) == minutes * SAMPLES_PER_POINT
        active = registry.active_model(name)
        assert active is not None
        assert active.version == 1  # a restart does not retrain a fresh model
        registry.close()

    vm.flush()
    samples = export(vm.url, f'anomaly_score{{pipeline="{name}"}}', after - 3 * FUTURE, after)
    assert set(samples) == set(HOSTS)
    watermark_ms, after_ms = int(watermark.timestamp() * 1000), int(after.timestamp() * 1000)
    for host, points in samples.items():
        count = Counter(ts for ts, _ in points)
        stamps = sorted(count)
        assert stamps == list(range(stamps[0], after_ms + 1, 60_000)), f"{host}: a gap"
        assert stamps[-1] == after_ms
        # Up to the watermark every minute was scored exactly once ...
        assert {count[ts] for ts in stamps if ts <= watermark_ms} == {1}, host
        # ... after it, the killed run's minutes again, with the same values.
        twice = [ts for ts in stamps if count[ts] == 2]
        assert twice, f"{host}: the killed run's write never reached the TSDB"
        assert twice == list(range(watermark_ms + 60_000, twice[-1] + 1, 60_000))
        assert max(count.values()) == 2
        for ts in twice:
            assert len({v for t, v in points if t == ts}) == 1, f"{host}: {ts} differs"


# --- 3. TSDB outage ---------------------------------------------------------------------------


def test_scores_written_during_an_outage_arrive_when_the_tsdb_is_back(
    victoria_metrics: LocalTSDB,
    tsdb_factory: TSDBFactory,
    tmp_path: Path,
    daemons: DaemonFactory,
) -> None:
    """Reads from the seeded VictoriaMetrics, writes to a private one that goes down: the
    infer still succeeds (its scores go to the outbox) and the outbox flush delivers them."""
    vm = victoria_metrics
    metric, name = "oa_daemon_outage", "outage"
    seeded(vm.url, metric, tmp_path)
    vm.flush()
    sink = tsdb_factory("victoria_metrics")
    daemon = daemons(
        vm.url,
        f"tsdb.write_url={sink.url}/api/v1/write",
        "remote_write.retry.max_attempts=2",
        "remote_write.retry.initial_backoff=100ms",
    )
    (daemon.pipelines_dir / "outage.yaml").write_text(pipeline_yaml(name, metric))
    daemon.start()
    assert daemon.run_after(name, "train", 0, timeout=120)["status"] == "ok"
    assert daemon.infer_now(name)["status"] == "ok"
    sink.flush()
    selector = f'anomaly_score{{pipeline="{name}"}}'
    far = timedelta(hours=3)
    before = export(sink.url, selector, utc_now() - far, utc_now() + far)
    for host in HOSTS:
        stamps = [ts for ts, _ in before[host]]
        assert len(stamps) >= CATCHUP_POINTS
        assert stamps == list(range(stamps[0], stamps[-1] + 1, 60_000)), host

    sink.stop()
    # Pretend the daemon fell behind: rewinding the watermark (the daemon reads it from the
    # registry on every run) gives the next infer 10 minutes to write without waiting for
    # 10 minutes to pass. Those minutes were written once already; the outbox adds a copy.
    registry = daemon.registry()
    watermark = registry.watermark(name)
    assert watermark is not None
    rewound = watermark - 10 * STEP
    registry.set_watermark(name, rewound)
    registry.close()
    queued = daemon.infer_now(name)
    assert queued["status"] == "ok", queued
    assert queued["samples_written"] >= 10 * SAMPLES_PER_POINT  # queued counts as written
    batches = daemon.metric("openanomaly_outbox_batches")
    assert batches is not None
    assert batches > 0
    assert any(e["msg"].startswith("remote write to") for e in daemon.logs)
    outbox = daemon.data_dir / "outbox"
    assert list(outbox.glob("*.rwb"))

    sink.start()
    wait_for(
        "the outbox to drain", lambda: daemon.metric("openanomaly_outbox_batches") == 0, 30, 0.5
    )
    assert not list(outbox.glob("*.rwb"))
    assert daemon.terminate() == 0
    registry = daemon.registry()
    last = registry.watermark(name)
    registry.close()
    assert last is not None
    sink.flush()
    after = export(sink.url, selector, utc_now() - far, utc_now() + far)
    rewound_ms, watermark_ms = int(rewound.timestamp() * 1000), int(watermark.timestamp() * 1000)
    for host in HOSTS:
        count = Counter(ts for ts, _ in after[host])
        stamps = sorted(count)
        assert stamps == list(range(stamps[0], int(last.timestamp() * 1000) + 1, 60_000)), host
        assert stamps[0] == before[host][0][0]
        assert {count[ts] for ts in stamps if ts <= rewound_ms} == {1}, host
        # written before the outage, then once more from the outbox
        assert {count[ts] for ts in stamps if rewound_ms < ts <= watermark_ms} == {2}, host
        assert max(count.values()) == 2
        for ts in stamps:
            assert len({v for t, v in after[host] if t == ts}) == 1, f"{host}: {ts} differs"
    no_errors(daemon, allowed=("remote write to",))


# --- 4. hot reload ----------------------------------------------------------------------------


def test_pipeline_files_are_reloaded_while_running(
    victoria_metrics: LocalTSDB, tmp_path: Path, daemons: DaemonFactory
) -> None:
    vm = victoria_metrics
    metric, name = "oa_daemon_reload", "reload"
    seeded(vm.url, metric, tmp_path)
    vm.flush()
    daemon = daemons(vm.url, "jobs.reload_interval=1s")
    (daemon.pipelines_dir / "README.txt").write_text("not a pipeline\n")
    daemon.start()
    assert daemon.json("/api/v1/pipelines")["pipelines"] == []

    def listed() -> list[dict[str, Any]]:
        pipelines: list[dict[str, Any]] = daemon.json("/api/v1/pipelines")["pipelines"]
        return pipelines

    # Added: appears and is trained.
    path = daemon.pipelines_dir / "reload.yaml"
    path.write_text(pipeline_yaml(name, metric))
    wait_for("the new pipeline", lambda: [p for p in listed() if p["name"] == name], 10)
    assert daemon.run_after(name, "train", 0, timeout=120)["status"] == "ok"
    first = daemon.json(f"/api/v1/pipelines/{name}")
    assert first["model"] == 1
    assert daemon.metric("openanomaly_config_last_reload_successful") == 1

    # Changed: a new configuration hash and a new model version for it.
    path.write_text(pipeline_yaml(name, metric, season_length=6))
    changed = wait_for(
        "the changed pipeline",
        lambda: [p for p in listed() if p["config_hash"] != first["config_hash"]],
        10,
    )[0]
    assert changed["pipeline"]["model"]["params"] == {"season_length": 6}
    assert daemon.run_after(name, "train", 1, timeout=120)["status"] == "ok"
    second = daemon.json(f"/api/v1/pipelines/{name}")
    assert second["model"] == 2
    assert second["model_stale"] is False
    models = daemon.json(f"/api/v1/models?pipeline={name}")["models"]
    hashes = {m["version"]: m["config_hash"] for m in models}
    assert hashes == {1: first["config_hash"], 2: second["config_hash"]}

    # Broken: the last good version keeps running, the problem names the file.
    path.write_text(pipeline_yaml(name, metric).replace("step: 1m", "step: soon"))
    problems = wait_for(
        "the problem to be reported", lambda: daemon.json("/api/v1/pipelines")["problems"], 10
    )
    assert [p["file"] for p in problems] == [str(path)]
    assert problems[0]["field"] == "step"
    kept = listed()
    assert [p["config_hash"] for p in kept] == [second["config_hash"]]
    assert daemon.metric("openanomaly_config_last_reload_successful") == 0
    assert daemon.metric("openanomaly_pipeline_problems") == 1
    assert daemon.infer_now(name)["status"] == "ok"  # and it still scores

    # Removed: gone from the API and from the scheduler.
    path.unlink()
    wait_for("the pipeline to go", lambda: not listed(), 10)
    assert daemon.post(f"/api/v1/pipelines/{name}/infer", TOKEN).status_code == 404
    assert daemon.metric("openanomaly_pipelines") == 0
    assert daemon.json(f"/api/v1/runs?pipeline={name}")["runs"]  # history stays
    assert daemon.terminate() == 0
    no_errors(daemon, allowed=("pipeline not loaded:", "the last good version keeps running"))

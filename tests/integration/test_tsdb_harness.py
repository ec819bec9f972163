"""The harness itself: real TSDB processes start, answer, keep data across restarts, stop."""

from __future__ import annotations

import json
import socket
import time
import urllib.error

import pytest

from openanomaly.local_tsdb import LocalTSDB, http_get, http_post
from tests.conftest import TSDBFactory

pytestmark = pytest.mark.integration


def test_answers_promql(tsdb: LocalTSDB) -> None:
    data = tsdb.query("vector(1) + 41")
    assert data["resultType"] == "vector"
    assert float(data["result"][0]["value"][1]) == 42.0


def test_listens_on_loopback_only(tsdb: LocalTSDB) -> None:
    assert tsdb.url.startswith("http://127.0.0.1:")
    status, _ = http_get(tsdb.url + tsdb.ready_path)
    assert status == 200


def test_prometheus_accepts_remote_write_and_out_of_order(prometheus: LocalTSDB) -> None:
    status, body = http_get(prometheus.url + "/api/v1/status/flags")
    flags = json.loads(body)["data"]
    assert status == 200
    assert flags["web.enable-remote-write-receiver"] == "true"
    status, body = http_get(prometheus.url + "/api/v1/status/config")
    assert "out_of_order_time_window: 30d" in json.loads(body)["data"]["yaml"]
    # An empty remote-write body is a protocol error, not a 404: the receiver is mounted.
    status, _ = http_post(prometheus.url + "/api/v1/write", b"", "application/x-protobuf")
    assert status in (400, 415)


def test_victoria_metrics_stores_and_returns_samples(victoria_metrics: LocalTSDB) -> None:
    now = int(time.time())
    lines = "".join(
        f'harness_probe{{case="store"}} {i} {(now - 60 + i) * 1000}\n' for i in range(5)
    )
    status, body = http_post(
        victoria_metrics.url + "/api/v1/import/prometheus", lines.encode(), "text/plain"
    )
    assert status == 204, body
    victoria_metrics.flush()
    data = victoria_metrics.query('harness_probe{case="store"}[2m]', at=now)
    values = [float(v) for _, v in data["result"][0]["values"]]
    assert values == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_data_survives_restart_on_the_same_port(tsdb_factory: TSDBFactory) -> None:
    vm = tsdb_factory("victoria_metrics")
    now = int(time.time())
    # Older than VictoriaMetrics' 30 s latency offset, which hides the newest samples.
    body = f"harness_restart 7 {(now - 120) * 1000}\n".encode()
    assert http_post(vm.url + "/api/v1/import/prometheus", body, "text/plain")[0] == 204
    vm.flush()
    port = vm.port
    vm.restart()
    assert vm.port == port
    result = vm.query("last_over_time(harness_restart[5m])", at=now)["result"]
    assert float(result[0]["value"][1]) == 7.0


def test_kill_is_a_crash_and_start_recovers(tsdb_factory: TSDBFactory) -> None:
    prom = tsdb_factory("prometheus")
    prom.kill()
    assert not prom.running
    with pytest.raises(urllib.error.URLError, match="Connection refused"):
        http_get(prom.url + "/-/ready", timeout=1)
    prom.start()  # replays its WAL after the crash
    assert prom.query("vector(3)")["result"][0]["value"][1] == "3"


def test_stop_releases_the_port(tsdb_factory: TSDBFactory) -> None:
    prom = tsdb_factory("prometheus")
    prom.stop()
    assert not prom.running
    with socket.socket() as sock:
        # SO_REUSEADDR ignores our own TIME_WAIT connections but not a live listener.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", prom.port))  # raises if the server still held the port

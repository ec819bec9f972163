"""`openanomaly run` as a real subprocess for the daemon integration tests: start it, read its
JSON logs, talk to its HTTP API, kill it; plus the synthetic data those tests score."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np

from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.adapters.model_registry.sql import SqlRegistry
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_labels
from openanomaly.local_tsdb import free_port
from openanomaly.ports import OutputSeries

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "test-token-1234"
STEP = timedelta(minutes=1)
HOSTS = ("a", "b", "c")
SPIKE_HOST = "b"
T = TypeVar("T")


def minute_floor(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def seed(
    tsdb_url: str,
    metric: str,
    *,
    end: datetime,
    spikes: Sequence[datetime],
    outbox_dir: Path,
    history: timedelta = timedelta(days=3),
    hosts: Sequence[str] = HOSTS,
) -> None:
    """`history` up to `end` at 1m: a wave with a 12-step period plus N(0, 1) noise per host,
    +12 sigma at `spikes` on host b. Written with our own remote-write writer."""
    rng = np.random.default_rng(7)
    n = int(history / STEP) + 1
    start = end - STEP * (n - 1)
    ts_ms = int(start.timestamp() * 1000) + np.arange(n, dtype=np.int64) * 60_000
    series = []
    for k, host in enumerate(hosts):
        values = 50 + 10 * k + 5 * np.sin(2 * np.pi * np.arange(n) / 12) + rng.normal(0, 1, n)
        if host == SPIKE_HOST:
            for spike in spikes:
                values[int((spike - start) / STEP)] += 12.0
        series.append(OutputSeries(output_labels(metric, {"host": host}, {}), ts_ms, values))
    writer = RemoteWriteWriter(
        TSDBSettings(url=tsdb_url), RemoteWriteSettings(max_samples_per_request=50_000), outbox_dir
    )
    try:
        result = writer.write(series)
    finally:
        writer.close(1)
    assert result.accepted == len(hosts) * n, result


def pipeline_yaml(name: str, query: str, *, season_length: int = 12, window: str = "1d") -> str:
    return (
        f"name: {name}\n"
        f"query: {query}\n"
        "step: 1m\n"
        f"train: {{window: {window}, every: 1h}}\n"
        "infer: {every: 1m, context: 3h, max_catchup: 1h}\n"
        f"model: {{name: AutoETS, params: {{season_length: {season_length}}}}}\n"
        # the spikes are minutes apart: each must score over 1 (hold-off has its own tests)
        "scoring: {holdoff: 0s}\n"
    )


def wait_for(
    what: str, check: Callable[[], T | None], timeout: float = 60, interval: float = 0.1
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


class Daemon:
    """One `python -m openanomaly run` child process with JSON logs on stderr."""

    def __init__(
        self,
        workdir: Path,
        tsdb_url: str,
        *,
        settings: Sequence[str] = (),
        token: str | None = TOKEN,
    ) -> None:
        self.workdir = workdir
        self.pipelines_dir = workdir / "pipelines.d"
        self.data_dir = workdir / "data"
        self.pipelines_dir.mkdir(parents=True, exist_ok=True)
        self.tsdb_url = tsdb_url
        self.settings = list(settings)
        self.token = token
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        self.logs: list[dict[str, Any]] = []
        self._reader: threading.Thread | None = None
        self.client = httpx.Client(trust_env=False, timeout=10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def registry_url(self) -> str:
        return f"sqlite:///{self.data_dir.absolute() / 'registry.db'}"

    def registry(self) -> SqlRegistry:
        return SqlRegistry(self.registry_url)

    def start(self) -> Daemon:
        assert self.process is None or self.process.poll() is not None, "already running"
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
        env["PYTHONPATH"] = str(ROOT)
        if self.token is not None:
            env["OA_HTTP__API_TOKEN"] = self.token
        args = [sys.executable, "-m", "openanomaly", "run", "--tsdb-url", self.tsdb_url]
        args += ["--pipelines-dir", str(self.pipelines_dir), "--data-dir", str(self.data_dir)]
        for setting in (
            "tsdb.query_delay=0s",
            f"http.listen=127.0.0.1:{self.port}",
            "log.format=json",
            *self.settings,
        ):
            args += ["--set", setting]
        self.logs = []
        self.process = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_logs, args=(self.process,), daemon=True)
        self._reader.start()
        wait_for("the daemon's /healthz", self._healthy, timeout=60)
        return self

    def _read_logs(self, process: subprocess.Popen[str]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = {"msg": line.rstrip("\n"), "raw": True}
            self.logs.append(entry)

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"the daemon exited ({self.process.returncode}):\n{self.log_text()}"
            )
        try:
            return self.client.get(self.url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        return "\n".join(str(e.get("msg")) for e in self.logs)

    # --- HTTP --------------------------------------------------------------------------------

    def get(self, path: str) -> httpx.Response:
        return self.client.get(self.url + path)

    def json(self, path: str) -> Any:
        response = self.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text)
        return response.json()

    def post(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return self.client.post(self.url + path, headers=headers)

    def trigger(self, name: str, kind: str = "infer") -> None:
        response = self.post(f"/api/v1/pipelines/{name}/{kind}", self.token)
        assert response.status_code == 202, response.text

    def runs(self, name: str, kind: str | None = None) -> list[dict[str, Any]]:
        runs = self.json(f"/api/v1/runs?pipeline={name}&limit=1000")["runs"]
        return [r for r in runs if kind is None or r["kind"] == kind]

    def finished_runs(self, name: str, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.runs(name, kind) if r["status"] != "running"]

    def run_after(self, name: str, kind: str, seen: int, timeout: float = 60) -> dict[str, Any]:
        """Wait for the (seen+1)-th finished run of this kind; return it (newest first list)."""

        def check() -> dict[str, Any] | None:
            finished = self.finished_runs(name, kind)
            return finished[0] if len(finished) > seen else None

        return wait_for(f"{kind} run #{seen + 1} of {name}", check, timeout=timeout, interval=0.2)

    def infer_now(self, name: str, timeout: float = 60) -> dict[str, Any]:
        """Trigger an infer and return its finished run."""
        seen = len(self.finished_runs(name, "infer"))
        self.trigger(name, "infer")
        return self.run_after(name, "infer", seen, timeout)

    def metrics(self) -> str:
        response = self.get("/metrics")
        assert response.status_code == 200
        return response.text

    def metric(self, name: str, **labels: str) -> float | None:
        """The value of one sample in /metrics whose labels include `labels`."""
        for line in self.metrics().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            metric, _, label_text = head.partition("{")
            if metric != name:
                continue
            pairs = dict(p.split("=", 1) for p in label_text.rstrip("}").split(",") if "=" in p)
            if all(pairs.get(k) == f'"{v}"' for k, v in labels.items()):
                return float(value)
        return None

    # --- stopping ----------------------------------------------------------------------------

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout)
        if self._reader is not None:
            self._reader.join(5)
        return code

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self._reader is not None:
            self._reader.join(5)

    def close(self) -> None:
        self.kill()
        self.client.close()


def export(tsdb_url: str, selector: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Raw samples from VictoriaMetrics' /api/v1/export: {host: [(ts_ms, value), ...]}."""
    response = httpx.get(
        tsdb_url + "/api/v1/export",
        params={"match[]": selector, "start": int(start.timestamp()), "end": int(end.timestamp())},
        timeout=30,
        trust_env=False,
    )
    response.raise_for_status()
    out: dict[str, list[tuple[int, float]]] = {}
    for line in response.text.splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        host = item["metric"].get("host", "")
        out.setdefault(host, []).extend(zip(item["timestamps"], item["values"], strict=True))
    for samples in out.values():
        samples.sort()
    return out


def utc_now() -> datetime:
    return datetime.now(UTC)


class HoldingProxy:
    """A forwarding HTTP proxy in front of a TSDB that can freeze the daemon mid-run, so a test
    can SIGKILL it at a known point: `hold_reads` parks query_range requests before they reach
    the TSDB; `hold_writes` forwards remote writes (the TSDB has the samples) and parks the
    answer, as if the daemon died before it heard back."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.url = ""
        self.hold_reads = False
        self.hold_writes = False
        self.held: list[str] = []
        self.release = threading.Event()
        self._client = httpx.Client(trust_env=False, timeout=60)

    def _forward(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        body = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        path = handler.path
        is_read = "/query_range" in path
        is_write = path.startswith("/api/v1/write")
        if is_read and self.hold_reads:
            self.held.append(path)
            self.release.wait(60)
        headers = {
            k: v
            for k, v in handler.headers.items()
            if k.lower() not in ("host", "content-length", "connection", "accept-encoding")
        }
        response = self._client.request(method, self.upstream + path, content=body, headers=headers)
        if is_write and self.hold_writes:
            self.held.append(path)
            self.release.wait(60)
        try:
            handler.send_response(response.status_code)
            for name in ("Content-Type", "Retry-After"):
                if name in response.headers:
                    handler.send_header(name, response.headers[name])
            handler.send_header("Content-Length", str(len(response.content)))
            handler.end_headers()
            handler.wfile.write(response.content)
        except OSError:
            pass  # the daemon is gone

    @contextmanager
    def running(self) -> Iterator[HoldingProxy]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                proxy._forward(self, "GET")

            def do_POST(self) -> None:
                proxy._forward(self, "POST")

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            server.shutdown()
            server.server_close()
            self._client.close()

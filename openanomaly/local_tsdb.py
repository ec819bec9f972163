"""Start a real VictoriaMetrics or Prometheus on a loopback port, in a directory of our own.

Used by the test harness (integration tests run against real servers, never mocks) and by
`openanomaly demo`. Standard library only: this is tooling around the product, not an adapter.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from openanomaly.errors import OpenAnomalyError

# Loopback only, and never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class TSDBStartError(OpenAnomalyError):
    """The TSDB binary is missing, exited, or did not become ready in time."""


def free_port() -> int:
    """A port the kernel just reported free on 127.0.0.1 (a race remains; `start` retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET without proxies; returns (status, body) for any HTTP status."""
    try:
        with _OPENER.open(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_post(url: str, body: bytes, content_type: str, timeout: float = 10.0) -> tuple[int, bytes]:
    request = urllib.request.Request(  # noqa: S310 - http URLs of our own loopback servers
        url, data=body, method="POST", headers={"Content-Type": content_type}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class LocalTSDB:
    """A TSDB child process. Data survives `stop`/`start` and `kill`/`start` (same directory and
    port), which is what outage and crash tests need."""

    binary_name: ClassVar[str]
    debian_package: ClassVar[str]
    ready_path: ClassVar[str]

    def __init__(self, workdir: Path, *, port: int | None = None, binary: str | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port or free_port()
        found = binary or shutil.which(self.binary_name)
        if found is None:
            raise TSDBStartError(
                f"{self.binary_name} not found on PATH; install it "
                f"(Debian: apt-get install {self.debian_package})"
            )
        self.binary = found
        self.log_path = self.workdir / f"{self.binary_name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 60.0) -> Self:
        if self.running:
            return self
        for _attempt in range(3):
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    cwd=self.workdir,
                    start_new_session=True,  # our Ctrl-C handling decides when it stops
                )
            if self._wait_ready(timeout):
                return self
            if self._fixed_port or "address already in use" not in self._log_tail():
                break
            self.port = free_port()  # lost the race for the port: try another
        tail = self._log_tail()
        self.kill()
        raise TSDBStartError(f"{self.binary_name} did not become ready at {self.url}:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            with contextlib.suppress(OSError):
                status, _ = http_get(self.url + self.ready_path, timeout=2)
                if status == 200:
                    return True
            time.sleep(0.05)
        return False

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop (SIGTERM), then SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: a crash, as far as the TSDB can tell."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def restart(self, timeout: float = 60.0) -> Self:
        self.stop()
        return self.start(timeout)

    def flush(self) -> None:
        """Make everything written so far visible to queries (VictoriaMetrics buffers ~1 s)."""

    def query(self, promql: str, at: float | None = None) -> Any:
        """Instant query; returns the `data` part of the API answer (test and demo helper)."""
        params = {"query": promql} | ({"time": str(at)} if at is not None else {})
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"
        status, body = http_get(url)
        answer = json.loads(body)
        if status != 200 or answer.get("status") != "success":
            raise OpenAnomalyError(f"query {promql!r} failed ({status}): {body[:500]!r}")
        return answer["data"]

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalVictoriaMetrics(LocalTSDB):
    binary_name = "victoria-metrics"
    debian_package = "victoria-metrics"
    ready_path = "/health"

    def command(self) -> list[str]:
        return [
            self.binary,
            f"-storageDataPath={self.workdir / 'data'}",
            f"-httpListenAddr=127.0.0.1:{self.port}",
            "-retentionPeriod=100y",
            # Tests and the demo backfill history and read it straight back; the rollup cache
            # would otherwise serve answers computed before the backfill.
            "-search.disableCache",
            "-loggerLevel=WARN",
        ]

    def flush(self) -> None:
        status, body = http_get(f"{self.url}/internal/force_flush")
        if status != 200:
            raise OpenAnomalyError(f"force_flush failed ({status}): {body[:200]!r}")


class LocalPrometheus(LocalTSDB):
    binary_name = "prometheus"
    debian_package = "prometheus"
    ready_path = "/-/ready"
    out_of_order_window = "30d"

    def command(self) -> list[str]:
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "# written by openanomaly.local_tsdb\n"
            "global:\n  scrape_interval: 15s\n"
            "storage:\n  tsdb:\n"
            f"    out_of_order_time_window: {self.out_of_order_window}\n"
        )
        return [
            self.binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
            "--web.enable-admin-api",
            "--storage.tsdb.retention.time=100y",
            "--log.level=warn",
        ]

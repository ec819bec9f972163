"""Cluster mode for the integration tests: `openanomaly worker` processes and the settings file
that schedulers and workers share (broker on Redis, registry on PostgreSQL, artifacts in one
directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from tests.daemon_harness import ROOT, wait_for


def cluster_settings(
    path: Path,
    *,
    tsdb_url: str,
    broker_url: str,
    registry_url: str,
    artifacts_dir: Path,
    shard_series: int = 1000,
    lease_ttl: str = "30s",
    visibility_timeout: str | None = None,
    infer_timeout: str = "60s",
    train_timeout: str = "120s",
) -> Path:
    """Write an openanomaly.yaml for cluster mode; returns its path."""
    dispatcher = {
        "kind": "celery",
        "broker_url": broker_url,
        "shard_series": shard_series,
        "lease_ttl": lease_ttl,
        "workers": 1,
    }
    if visibility_timeout is not None:
        dispatcher["visibility_timeout"] = visibility_timeout
    settings = {
        "tsdb": {"url": tsdb_url, "query_delay": "0s"},
        "storage": {
            "data_dir": str(path.parent / "data"),
            "registry_url": registry_url,
            "artifacts_url": f"file://{artifacts_dir}",
        },
        "dispatcher": dispatcher,
        "jobs": {"infer_timeout": infer_timeout, "train_timeout": train_timeout},
        "log": {"format": "text", "level": "info"},
    }
    path.write_text(yaml.safe_dump(settings))
    return path


class Worker:
    """One `python -m openanomaly worker` child process; its log goes to a file."""

    def __init__(self, workdir: Path, config: Path, name: str) -> None:
        self.workdir = workdir / name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.log_path = self.workdir / "worker.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, timeout: float = 60) -> Worker:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
        env["PYTHONPATH"] = str(ROOT)
        args = [sys.executable, "-m", "openanomaly", "worker", "--config", str(self.config)]
        self.lines = []
        self.process = subprocess.Popen(
            args,
            cwd=self.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._reader = threading.Thread(target=self._read, args=(self.process,), daemon=True)
        self._reader.start()
        wait_for(f"worker {self.workdir.name} ready", self._ready, timeout=timeout)
        return self

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        with self.log_path.open("a") as log:
            for raw in process.stdout:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                log.write(line)
                log.flush()

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited ({self.process.returncode}):\n{self.text()}")
        return any(" ready." in line for line in self.lines)

    def text(self) -> str:
        return "".join(self.lines)

    def received(self) -> int:
        return sum("received" in line and "openanomaly.run_job" in line for line in self.lines)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

"""Shared fixtures. Integration tests get real TSDB processes on free loopback ports.

A missing TSDB binary skips those tests on a developer's machine but fails them when `CI` is set:
CI must never go green by skipping what it claims to test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openanomaly.local_tsdb import LocalPrometheus, LocalTSDB, LocalVictoriaMetrics

TSDB_KINDS: dict[str, type[LocalTSDB]] = {
    "victoria_metrics": LocalVictoriaMetrics,
    "prometheus": LocalPrometheus,
}


def require_binary(kind: type[LocalTSDB]) -> str:
    path = shutil.which(kind.binary_name)
    if path is not None:
        return path
    message = (
        f"{kind.binary_name} is not on PATH (Debian: apt-get install {kind.debian_package}; "
        "`bash .ci/run` installs it)"
    )
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message + " -- CI must not skip integration tests")
    pytest.skip(message)


def require_module(module: str, how: str) -> None:
    """Like require_binary, for an optional extra's module (neuralforecast)."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed ({how})"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message + " -- CI must not skip these tests")
    pytest.skip(message)


def _session_tsdb(
    kind: type[LocalTSDB], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTSDB]:
    binary = require_binary(kind)
    tsdb = kind(tmp_path_factory.mktemp(kind.binary_name), binary=binary)
    with tsdb:
        yield tsdb


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSDB]:
    """One VictoriaMetrics for the whole session; tests use distinct metric names."""
    yield from _session_tsdb(LocalVictoriaMetrics, tmp_path_factory)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTSDB]:
    """One Prometheus (remote-write receiver on, out-of-order ingestion on) for the session."""
    yield from _session_tsdb(LocalPrometheus, tmp_path_factory)


@pytest.fixture(params=sorted(TSDB_KINDS))
def tsdb(request: pytest.FixtureRequest) -> LocalTSDB:
    """Runs the test once against each real TSDB."""
    value = request.getfixturevalue(request.param)
    assert isinstance(value, LocalTSDB)
    return value


TSDBFactory = Callable[[str], LocalTSDB]


@pytest.fixture
def tsdb_factory(tmp_path: Path) -> Iterator[TSDBFactory]:
    """Private, started TSDBs a test may stop, kill and restart; all stopped at teardown."""
    started: list[LocalTSDB] = []

    def make(kind: str) -> LocalTSDB:
        cls = TSDB_KINDS[kind]
        binary = require_binary(cls)
        tsdb = cls(tmp_path / f"{kind}-{len(started)}", binary=binary)
        started.append(tsdb)
        return tsdb.start()

    yield make
    for tsdb in started:
        tsdb.kill()

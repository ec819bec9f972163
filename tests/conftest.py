"""Shared fixtures. Integration tests get real TSDB processes on free loopback ports.

A missing TSDB binary skips those tests on a developer's machine but fails them when `CI` is set:
CI must never go green by skipping what it claims to test.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from openanomaly.local_tsdb import LocalPrometheus, LocalTSDB, LocalVictoriaMetrics
from tests.services import LocalPostgres, LocalRedis, find_postgres_binary

TSDB_KINDS: dict[str, type[LocalTSDB]] = {
    "victoria_metrics": LocalVictoriaMetrics,
    "prometheus": LocalPrometheus,
}


def require_executable(
    name: str, debian_package: str, locate: Callable[[str], str | None] = shutil.which
) -> str:
    """The path of a server binary, or skip the test (fail it when `CI` is set)."""
    path = locate(name)
    if path is not None:
        return path
    message = (
        f"{name} is not installed (Debian: apt-get install {debian_package}; "
        "`bash .ci/run` installs it)"
    )
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message + " -- CI must not skip integration tests")
    pytest.skip(message)


def require_binary(kind: type[LocalTSDB]) -> str:
    return require_executable(kind.binary_name, kind.debian_package)


def require_module(module: str, how: str) -> None:
    """Like require_binary, for an optional extra's module (neuralforecast); in a test, or at
    the top of a module whose imports need it (then the whole module is skipped)."""
    import importlib.util

    if importlib.util.find_spec(module) is not None:
        return
    message = f"{module} is not installed ({how})"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(message + " -- CI must not skip these tests")
    pytest.skip(message, allow_module_level=True)


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


# Real Redis and PostgreSQL (tests/services.py), under the same missing-binary policy.


def require_redis() -> str:
    return require_executable("redis-server", LocalRedis.debian_package)


def require_postgres() -> None:
    for name in ("initdb", "postgres", "psql"):
        require_executable(name, LocalPostgres.debian_package, find_postgres_binary)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """One Redis (no persistence) for the session; tests use distinct keys or queues."""
    binary = require_redis()
    with LocalRedis(tmp_path_factory.mktemp("redis"), binary=binary) as server:
        yield server


RedisFactory = Callable[[], LocalRedis]


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[RedisFactory]:
    """Private, started Redis servers a test may stop, kill and start again (on the same port);
    all killed at teardown."""
    started: list[LocalRedis] = []

    def make() -> LocalRedis:
        binary = require_redis()
        server = LocalRedis(tmp_path / f"redis-{len(started)}", binary=binary)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """One PostgreSQL for the session (database `oa`); `pg_database` gives a test its own."""
    require_postgres()
    with LocalPostgres(tmp_path_factory.mktemp("postgres")) as server:
        yield server


@pytest.fixture
def pg_database(postgres_server: LocalPostgres, request: pytest.FixtureRequest) -> str:
    """The SQLAlchemy URL of a new, empty database on the session PostgreSQL."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower())[:40].strip("_")
    return postgres_server.fresh_database(f"t_{stem}_{uuid.uuid4().hex[:8]}")


# The web UI's browser tests (tests/integration/test_ui.py): Debian's chromium, never a browser
# that Playwright downloads; missing, it fails under CI like a missing TSDB.


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of Debian's chromium (apt-get install chromium)."""
    return require_executable("chromium", "chromium")

"""The service harness itself: real Redis and PostgreSQL start, answer, stop, restart, isolate."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import RedisFactory, require_module
from tests.services import LocalPostgres, LocalRedis

pytestmark = pytest.mark.integration


def _redis_command(server: LocalRedis, *args: str) -> bytes:
    """One RESP command over a raw socket; returns the raw reply."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(arg.encode())}\r\n{arg}\r\n".encode() for arg in args
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=2) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_redis_answers_ping_on_loopback(redis_server: LocalRedis) -> None:
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    assert redis_server.ping()
    assert _redis_command(redis_server, "SET", "harness:probe", "42") == b"+OK\r\n"
    assert _redis_command(redis_server, "GET", "harness:probe") == b"$2\r\n42\r\n"
    config = _redis_command(redis_server, "CONFIG", "GET", "save")
    assert config == b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n"  # no snapshots


def test_redis_stop_then_start_comes_back_on_the_same_port(redis_factory: RedisFactory) -> None:
    server = redis_factory()
    port, url = server.port, server.url
    _redis_command(server, "SET", "outage:key", "before")
    server.stop()
    assert not server.running
    assert not server.ping()  # an outage, as a client sees it
    server.start()
    assert (server.port, server.url) == (port, url)
    assert server.ping()
    assert _redis_command(server, "GET", "outage:key") == b"$-1\r\n"  # nothing persisted


def test_killed_redis_refuses_connections(redis_factory: RedisFactory) -> None:
    server = redis_factory()
    server.kill()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    server.start()  # a crash is not the end: it comes back on the same port
    assert server.ping()


def test_postgres_round_trips_through_sqlalchemy(pg_database: str) -> None:
    require_module("psycopg", "uv sync --extra postgres")
    import sqlalchemy as sa

    engine = sa.create_engine(pg_database)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id integer PRIMARY KEY, name text)"))
            conn.execute(
                sa.text("INSERT INTO probe VALUES (:id, :name)"),
                [{"id": 1, "name": "alpha"}, {"id": 2, "name": "βeta"}],
            )
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM probe ORDER BY id")).all()
            version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    finally:
        engine.dispose()
    assert [tuple(row) for row in rows] == [(1, "alpha"), (2, "βeta")]
    assert int(str(version).split(".")[0]) >= 12


def test_fresh_databases_are_isolated(postgres_server: LocalPostgres) -> None:
    require_module("psycopg", "uv sync --extra postgres")
    import sqlalchemy as sa

    first = postgres_server.fresh_database("isolation_first")
    second = postgres_server.fresh_database("isolation_second")
    assert first.startswith("postgresql+psycopg://oa@127.0.0.1:")
    assert first.endswith("/isolation_first")
    assert second.endswith("/isolation_second")
    engines = [sa.create_engine(url) for url in (first, second)]
    try:
        with engines[0].begin() as conn:
            conn.execute(sa.text("CREATE TABLE only_here (x integer)"))
        tables = [sa.inspect(engine).get_table_names() for engine in engines]
    finally:
        for engine in engines:
            engine.dispose()
    assert tables == [["only_here"], []]
    with pytest.raises(ValueError, match="database name"):
        postgres_server.fresh_database('bad"; DROP DATABASE oa; --')

"""The registry's schema: tables as queries see them, and the migrations that build them.

Schema changes are ordered steps in `MIGRATIONS`; `migrate` applies the missing ones inside the
caller's transaction and records each in `schema_version`, so a crash mid-upgrade leaves the old
schema intact. Step 1 is frozen: a later change appends a step (e.g. `add_column("runs",
Column("note", Text))`) and edits the query-side tables here, never step 1.

Timestamps are integer microseconds since the epoch (UTC): exact, portable and sortable on every
backend, unlike DateTime with time zones, which SQLite does not have.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    func,
    insert,
    select,
    text,
)

from openanomaly.errors import RegistrySchemaTooNew

Migration = Callable[[Connection], None]
WRITE_OPTION = "openanomaly_write"  # execution option: this transaction writes (BEGIN IMMEDIATE)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- the current schema, as queries see it --------------------------------------------------

metadata = MetaData()
MODELS = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline", String(255), nullable=False),
    Column("version", Integer, nullable=False),
    Column("config_hash", String(128), nullable=False),
    Column("engine", String(255), nullable=False),
    Column("artifact_uri", Text, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("series_count", Integer, nullable=False),
    Column("train_start", BigInteger, nullable=False),
    Column("train_end", BigInteger, nullable=False),
    Column("fit_seconds", Float, nullable=False),
)
RUNS = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("pipeline", String(255), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("scheduled", BigInteger, nullable=False),
    Column("started", BigInteger, nullable=False),
    Column("finished", BigInteger),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("series_in", Integer, nullable=False),
    Column("series_scored", Integer, nullable=False),
    Column("series_skipped", Integer, nullable=False),
    Column("samples_written", BigInteger, nullable=False),
)
WATERMARKS = Table(
    "watermarks",
    metadata,
    Column("pipeline", String(255), primary_key=True),
    Column("at", BigInteger, nullable=False),
)
SCHEDULER_LEASE = "scheduler"  # the lease whose holder schedules (cluster mode)
LEASES = Table(
    "leases",
    metadata,
    Column("name", String(255), primary_key=True),
    Column("holder", String(255), nullable=False),
    Column("fence", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)
SCHEMA_VERSION = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied", BigInteger, nullable=False),
)

# --- migrations ------------------------------------------------------------------------------


def _v1(conn: Connection) -> None:
    """The first schema. Frozen: it must create exactly what version 1 databases have."""
    v1 = MetaData()
    Table(
        "models",
        v1,
        Column("id", Integer, primary_key=True),
        Column("pipeline", String(255), nullable=False),
        Column("version", Integer, nullable=False),
        Column("config_hash", String(128), nullable=False),
        Column("engine", String(255), nullable=False),
        Column("artifact_uri", Text, nullable=False),
        Column("sha256", String(64), nullable=False),
        Column("size", BigInteger, nullable=False),
        Column("created", BigInteger, nullable=False),
        Column("status", String(16), nullable=False),
        Column("series_count", Integer, nullable=False),
        Column("train_start", BigInteger, nullable=False),
        Column("train_end", BigInteger, nullable=False),
        Column("fit_seconds", Float, nullable=False),
        # The database, not our code, is what makes concurrent version numbers unique.
        UniqueConstraint("pipeline", "version", name="uq_models_pipeline_version"),
    )
    Table(
        "runs",
        v1,
        Column("id", Integer, primary_key=True),
        Column("pipeline", String(255), nullable=False, index=True),
        Column("kind", String(16), nullable=False),
        Column("scheduled", BigInteger, nullable=False),
        Column("started", BigInteger, nullable=False),
        Column("finished", BigInteger),
        Column("status", String(16), nullable=False, index=True),
        Column("error", Text),
        Column("series_in", Integer, nullable=False),
        Column("series_scored", Integer, nullable=False),
        Column("series_skipped", Integer, nullable=False),
        Column("samples_written", BigInteger, nullable=False),
    )
    Table(
        "watermarks",
        v1,
        Column("pipeline", String(255), primary_key=True),
        Column("at", BigInteger, nullable=False),
    )
    v1.create_all(conn)


def _v2(conn: Connection) -> None:
    """Leases: which scheduler leads (cluster mode), with a fencing token that grows on every
    change of holder. Frozen like step 1."""
    v2 = MetaData()
    Table(
        "leases",
        v2,
        Column("name", String(255), primary_key=True),
        Column("holder", String(255), nullable=False),
        Column("fence", BigInteger, nullable=False),
        Column("expires", BigInteger, nullable=False),
    )
    v2.create_all(conn)


def add_column(table: str, column: Column[Any]) -> Migration:
    """A step adding one nullable (or defaulted) column, in the dialect's own type syntax."""

    def step(conn: Connection) -> None:
        kind = column.type.compile(dialect=conn.dialect)
        quote = conn.dialect.identifier_preparer.quote
        conn.execute(text(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(column.name)} {kind}"))

    return step


# Step i (1-based) upgrades a database from version i-1 to i. Append only; never edit or reorder.
MIGRATIONS: list[Migration] = [_v1, _v2]


def current_version(conn: Connection) -> int:
    return int(conn.scalar(select(func.max(SCHEMA_VERSION.c.version))) or 0)


def migrate(conn: Connection, where: str) -> None:
    """Bring the database up to len(MIGRATIONS) inside the caller's (write) transaction.

    Raises RegistrySchemaTooNew, naming `where`, when the database is ahead of this code.
    """
    known = len(MIGRATIONS)
    SCHEMA_VERSION.create(conn, checkfirst=True)
    current = current_version(conn)
    if current > known:
        raise RegistrySchemaTooNew(
            f"model registry {where} has schema version {current}, but this OpenAnomaly knows "
            f"versions up to {known}: upgrade OpenAnomaly, or point storage.registry_url at "
            "another database"
        )
    for version in range(current + 1, known + 1):
        MIGRATIONS[version - 1](conn)
        conn.execute(insert(SCHEMA_VERSION).values(version=version, applied=to_us(now())))


# --- conversions -----------------------------------------------------------------------------


def to_us(at: datetime) -> int:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at!r}: the registry stores timezone-aware times only")
    return int((at - _EPOCH) // timedelta(microseconds=1))


def from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(us))


def now() -> datetime:
    return datetime.now(UTC)


def tune_sqlite(engine: Engine) -> None:
    """Pragmas on every new connection, and transactions we control.

    pysqlite's own transaction handling starts transactions lazily and not before DDL or
    SELECT, which would make migrations non-atomic and writes read stale snapshots, so it is
    switched off and SQLAlchemy's begin emits BEGIN (IMMEDIATE for writes) itself.
    """

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA busy_timeout=5000")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

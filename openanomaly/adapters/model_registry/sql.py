"""SqlRegistry: the model registry in any SQLAlchemy database (SQLite by default, PostgreSQL).

Opening a registry creates or upgrades its schema (see `schema`). SQLite gets WAL, a busy timeout
and BEGIN IMMEDIATE for writes, so writers from other threads or processes queue instead of
failing on a stale snapshot. On PostgreSQL a lost race for a version number or a watermark row
shows up as a unique violation and the whole transaction is retried. Queries use SQLAlchemy Core
constructs only, so every backend SQLAlchemy supports gets the same SQL semantics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, delete, func, insert, or_, select, update
from sqlalchemy.engine import URL, Engine, Row, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, SQLAlchemyError

from openanomaly.adapters.model_registry.schema import (
    LEASES,
    MODELS,
    RUNS,
    SCHEDULER_LEASE,
    WATERMARKS,
    WRITE_OPTION,
    current_version,
    from_us,
    migrate,
    now,
    to_us,
    tune_sqlite,
)
from openanomaly.errors import ConfigError, Problem, RegistryUnavailable
from openanomaly.ports import ArtifactRef, ModelRecord, RunRecord

_RETRIES = 5

# --- rows ------------------------------------------------------------------------------------


def _model(row: Row[Any]) -> ModelRecord:
    m = row._mapping
    return ModelRecord(
        pipeline=m["pipeline"],
        version=m["version"],
        config_hash=m["config_hash"],
        engine=m["engine"],
        artifact=ArtifactRef(uri=m["artifact_uri"], sha256=m["sha256"], size=m["size"]),
        created=from_us(m["created"]),
        series_count=m["series_count"],
        train_start=from_us(m["train_start"]),
        train_end=from_us(m["train_end"]),
        fit_seconds=m["fit_seconds"],
        status=m["status"],
    )


def _run(row: Row[Any]) -> RunRecord:
    m = row._mapping
    return RunRecord(
        id=m["id"],
        pipeline=m["pipeline"],
        kind=m["kind"],
        scheduled=from_us(m["scheduled"]),
        started=from_us(m["started"]),
        finished=None if m["finished"] is None else from_us(m["finished"]),
        status=m["status"],
        error=m["error"],
        series_in=m["series_in"],
        series_scored=m["series_scored"],
        series_skipped=m["series_skipped"],
        samples_written=m["samples_written"],
    )


def _run_values(run: RunRecord) -> dict[str, Any]:
    return {
        "finished": None if run.finished is None else to_us(run.finished),
        "status": run.status,
        "error": run.error,
        "series_in": run.series_in,
        "series_scored": run.series_scored,
        "series_skipped": run.series_skipped,
        "samples_written": run.samples_written,
    }


# --- the adapter -----------------------------------------------------------------------------


class SqlRegistry:
    """ModelRegistry on a SQLAlchemy URL; opening it creates or upgrades the schema."""

    def __init__(self, url: str) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigError(
                [Problem("storage.registry_url", 0, "", f"not a database URL: {exc}")]
            ) from None
        self.url = parsed.render_as_string(hide_password=True)
        self._engine = self._open(parsed)
        try:
            self._migrate()
        except BaseException:
            self._engine.dispose()
            raise

    def _open(self, url: URL) -> Engine:
        sqlite = url.get_backend_name() == "sqlite"
        # A `file:` URI (?uri=true) or an in-memory database has no directory to make.
        if sqlite and url.database not in (None, "", ":memory:") and not url.query.get("uri"):
            try:
                Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailable(
                    f"model registry {self.url}: cannot create its directory: {exc}"
                ) from None
        try:
            engine = create_engine(url, pool_pre_ping=not sqlite)
        except ImportError as exc:
            raise RegistryUnavailable(
                f"model registry {self.url}: database driver not installed: {exc}"
            ) from None
        except SQLAlchemyError as exc:
            raise RegistryUnavailable(f"model registry {self.url}: {_reason(exc)}") from None
        if sqlite:
            tune_sqlite(engine)
        return engine

    def close(self) -> None:
        self._engine.dispose()

    # --- plumbing ----------------------------------------------------------------------------

    @contextmanager
    def _guard(self, doing: str) -> Iterator[None]:
        """Translate SQLAlchemy's exceptions at the edge, naming the (masked) URL."""
        try:
            yield
        except SQLAlchemyError as exc:
            raise RegistryUnavailable(
                f"model registry {self.url}: {doing} failed: {_reason(exc)}"
            ) from exc

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def _retrying(self, doing: str, fn: Callable[[Connection], Any]) -> Any:
        """Run `fn` in a write transaction, again after a lost uniqueness race (PostgreSQL)."""
        with self._guard(doing):
            for attempt in range(_RETRIES):
                try:
                    with self._write() as conn:
                        return fn(conn)
                except IntegrityError:
                    if attempt == _RETRIES - 1:
                        raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _migrate(self) -> None:
        with self._guard("upgrading the schema"):
            for attempt in range(2):  # a concurrent first open may win the CREATE TABLE race
                try:
                    with self._write() as conn:
                        migrate(conn, self.url)
                    return
                except SQLAlchemyError:
                    if attempt == 1:
                        raise

    def schema_version(self) -> int:
        """The schema version of the database (equals len(MIGRATIONS) once open)."""
        with self._guard("reading the schema version"), self._read() as conn:
            return current_version(conn)

    def ping(self) -> None:
        # A real table, not SELECT 1: on SQLite that would not even touch the file.
        with self._guard("ping"), self._read() as conn:
            current_version(conn)

    # --- models ------------------------------------------------------------------------------

    def add_model(self, record: ModelRecord) -> ModelRecord:
        values = {
            "pipeline": record.pipeline,
            "config_hash": record.config_hash,
            "engine": record.engine,
            "artifact_uri": record.artifact.uri,
            "sha256": record.artifact.sha256,
            "size": record.artifact.size,
            "created": to_us(record.created),
            "status": "active",
            "series_count": record.series_count,
            "train_start": to_us(record.train_start),
            "train_end": to_us(record.train_end),
            "fit_seconds": record.fit_seconds,
        }

        def add(conn: Connection) -> int:
            if conn.dialect.name == "postgresql":
                # Serialise version assignment per pipeline: under READ COMMITTED, concurrent
                # max()+1 readers otherwise collide on the unique constraint again and again
                # (4 writers exhausted the retries in a test). Released at commit.
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(record.pipeline))))
            newest = conn.scalar(
                select(func.max(MODELS.c.version)).where(MODELS.c.pipeline == record.pipeline)
            )
            version = (newest or 0) + 1
            conn.execute(
                update(MODELS)
                .where(MODELS.c.pipeline == record.pipeline, MODELS.c.status == "active")
                .values(status="retired")
            )
            conn.execute(insert(MODELS).values(version=version, **values))
            return version

        version = self._retrying(f"adding a model for {record.pipeline!r}", add)
        return dataclasses.replace(record, version=version, status="active")

    def active_model(self, pipeline: str) -> ModelRecord | None:
        query = (
            select(MODELS)
            .where(MODELS.c.pipeline == pipeline, MODELS.c.status == "active")
            .order_by(MODELS.c.version.desc())
            .limit(1)
        )
        with self._guard(f"reading the active model of {pipeline!r}"), self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _model(row)

    def models(self, pipeline: str | None = None) -> list[ModelRecord]:
        query = select(MODELS).order_by(MODELS.c.id.desc())
        if pipeline is not None:
            query = query.where(MODELS.c.pipeline == pipeline)
        with self._guard("listing models"), self._read() as conn:
            return [_model(row) for row in conn.execute(query)]

    def model(self, pipeline: str, version: int) -> ModelRecord | None:
        query = select(MODELS).where(MODELS.c.pipeline == pipeline, MODELS.c.version == version)
        with self._guard(f"reading model {pipeline!r} v{version}"), self._read() as conn:
            row = conn.execute(query).first()
        return None if row is None else _model(row)

    def retired_models(self, pipeline: str, keep: int) -> list[ModelRecord]:
        if keep < 0:
            raise ValueError(f"keep must be >= 0, got {keep}")
        query = select(MODELS).where(MODELS.c.pipeline == pipeline)
        with self._guard(f"listing retired models of {pipeline!r}"), self._read() as conn:
            rows = conn.execute(query.order_by(MODELS.c.version.desc())).all()
        return [_model(row) for row in rows[keep:] if row._mapping["status"] == "retired"]

    def delete_model(self, pipeline: str, version: int) -> None:
        query = delete(MODELS).where(MODELS.c.pipeline == pipeline, MODELS.c.version == version)
        with self._guard(f"deleting model {pipeline!r} v{version}"), self._write() as conn:
            conn.execute(query)

    # --- runs --------------------------------------------------------------------------------

    def start_run(self, run: RunRecord) -> RunRecord:
        values = {
            **_run_values(run),
            "pipeline": run.pipeline,
            "kind": run.kind,
            "scheduled": to_us(run.scheduled),
            "started": to_us(run.started),
            "status": "running",
        }
        with self._guard(f"starting a {run.kind} run of {run.pipeline!r}"), self._write() as c:
            key = c.execute(insert(RUNS).values(**values)).inserted_primary_key
        assert key is not None  # every backend we support reports the new id
        return dataclasses.replace(run, id=int(key[0]), status="running")

    def finish_run(self, run: RunRecord) -> None:
        if run.id is None:
            raise ValueError("finish_run needs the run returned by start_run (it has no id)")
        values = _run_values(run)
        if values["finished"] is None:
            values["finished"] = to_us(now())
        query = update(RUNS).where(RUNS.c.id == run.id).values(**values)
        with self._guard(f"finishing run {run.id}"), self._write() as conn:
            found = conn.execute(query).rowcount
        if not found:
            raise ValueError(f"model registry {self.url} has no run {run.id}")

    def runs(
        self,
        pipeline: str | None = None,
        *,
        failed_only: bool = False,
        kind: str | None = None,
        limit: int = 100,
    ) -> list[RunRecord]:
        query = select(RUNS).order_by(RUNS.c.started.desc(), RUNS.c.id.desc()).limit(limit)
        if pipeline is not None:
            query = query.where(RUNS.c.pipeline == pipeline)
        if kind is not None:
            query = query.where(RUNS.c.kind == kind)
        if failed_only:
            query = query.where(or_(RUNS.c.status == "failed", RUNS.c.status == "interrupted"))
        with self._guard("listing runs"), self._read() as conn:
            return [_run(row) for row in conn.execute(query)]

    def interrupt_running(self) -> int:
        query = (
            update(RUNS)
            .where(RUNS.c.status == "running")
            .values(
                status="interrupted",
                finished=to_us(now()),
                error="the process running it stopped before it finished",
            )
        )
        with self._guard("marking interrupted runs"), self._write() as conn:
            return int(conn.execute(query).rowcount)

    # --- watermarks --------------------------------------------------------------------------

    def watermark(self, pipeline: str) -> datetime | None:
        query = select(WATERMARKS.c.at).where(WATERMARKS.c.pipeline == pipeline)
        with self._guard(f"reading the watermark of {pipeline!r}"), self._read() as conn:
            at = conn.scalar(query)
        return None if at is None else from_us(at)

    def set_watermark(self, pipeline: str, at: datetime, *, fence: int | None = None) -> bool:
        us = to_us(at)

        def upsert(conn: Connection) -> bool:
            if fence is not None:
                # Fenced (cluster mode): only the current holder of the scheduler lease may
                # move it, and only forward. FOR UPDATE serialises this with a takeover.
                held = select(LEASES.c.fence).where(LEASES.c.name == SCHEDULER_LEASE)
                if conn.dialect.name == "postgresql":
                    held = held.with_for_update()
                if conn.scalar(held) != fence:
                    return False
            # Update-then-insert works on every backend; a concurrent insert loses with a
            # primary-key violation and the whole transaction is retried as an update.
            query = update(WATERMARKS).where(WATERMARKS.c.pipeline == pipeline).values(at=us)
            if fence is not None:
                query = query.where(WATERMARKS.c.at < us)
            if conn.execute(query).rowcount:
                return True
            exists = select(WATERMARKS.c.at).where(WATERMARKS.c.pipeline == pipeline)
            if fence is not None and conn.scalar(exists) is not None:
                return True  # already at or past `at`: a re-run of a committed window
            conn.execute(insert(WATERMARKS).values(pipeline=pipeline, at=us))
            return True

        done: bool = self._retrying(f"setting the watermark of {pipeline!r}", upsert)
        return done

    def forget_pipeline(self, pipeline: str) -> None:
        query = delete(WATERMARKS).where(WATERMARKS.c.pipeline == pipeline)
        with self._guard(f"forgetting {pipeline!r}"), self._write() as conn:
            conn.execute(query)


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's message without SQLAlchemy's SQL echo and parameters."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}".strip()
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

"""SqlRegistry against real SQLite files: versions, runs, watermarks, migrations, crashes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Column, Text, inspect

from openanomaly.adapters.model_registry import SqlRegistry, schema
from openanomaly.errors import ConfigError, RegistrySchemaTooNew, RegistryUnavailable
from openanomaly.ports import ArtifactRef, ModelRecord, ModelRegistry, RunRecord

T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "registry.db"


@pytest.fixture
def reg(db: Path) -> Iterator[SqlRegistry]:
    registry = SqlRegistry(url(db))
    yield registry
    registry.close()


def model(pipeline: str = "p", n: int = 0) -> ModelRecord:
    return ModelRecord(
        pipeline=pipeline,
        version=0,
        config_hash=f"cfg{n}",
        engine="statsforecast",
        artifact=ArtifactRef(uri=f"file:///m/{pipeline}/{n}.bin", sha256="ab" * 32, size=10 + n),
        created=T0 + timedelta(minutes=n),
        series_count=3 + n,
        train_start=T0 - timedelta(days=7),
        train_end=T0,
        fit_seconds=1.5,
        status="whatever: ignored",
    )


def run(pipeline: str = "p", minute: int = 0, kind: str = "infer") -> RunRecord:
    at = T0 + timedelta(minutes=minute)
    return RunRecord(pipeline=pipeline, kind=kind, scheduled=at, started=at)


def test_satisfies_the_port(reg: SqlRegistry) -> None:
    port: ModelRegistry = reg
    port.ping()
    assert reg.schema_version() == len(schema.MIGRATIONS)


def test_versions_count_up_per_pipeline_and_only_the_newest_is_active(reg: SqlRegistry) -> None:
    assert reg.active_model("p") is None
    first = reg.add_model(model("p", 1))
    assert (first.version, first.status) == (1, "active")
    assert reg.active_model("p") == first
    second = reg.add_model(model("p", 2))
    other = reg.add_model(model("q", 3))
    assert (second.version, other.version) == (2, 1)
    assert reg.active_model("p") == second
    assert [(m.version, m.status) for m in reg.models("p")] == [(2, "active"), (1, "retired")]
    assert [(m.pipeline, m.version) for m in reg.models()] == [("q", 1), ("p", 2), ("p", 1)]
    stored = reg.models("p")[1]
    assert stored == ModelRecord(**{**vars(model("p", 1)), "version": 1, "status": "retired"})
    assert stored.created.tzinfo is UTC  # microseconds survive the round trip


def test_versions_are_never_reused_after_a_delete(reg: SqlRegistry) -> None:
    for n in range(3):
        reg.add_model(model("p", n))
    reg.delete_model("p", 3)
    reg.delete_model("p", 3)  # idempotent
    assert reg.active_model("p") is None
    assert [m.version for m in reg.models("p")] == [2, 1]
    # The highest *stored* version is 2 now, so the next one is 3 again; what matters is that the
    # database never holds two rows for one version.
    assert reg.add_model(model("p", 9)).version == 3


def test_retired_models_beyond_keep(reg: SqlRegistry) -> None:
    for n in range(5):
        reg.add_model(model("p", n))
    reg.add_model(model("q", 0))
    assert [m.version for m in reg.retired_models("p", keep=0)] == [4, 3, 2, 1]
    assert [m.version for m in reg.retired_models("p", keep=2)] == [3, 2, 1]
    assert reg.retired_models("p", keep=5) == []
    assert all(m.status == "retired" for m in reg.retired_models("p", keep=0))
    with pytest.raises(ValueError, match="keep"):
        reg.retired_models("p", keep=-1)


def test_concurrent_writers_never_share_a_version(db: Path) -> None:
    SqlRegistry(url(db)).close()
    errors: list[BaseException] = []
    per_thread = 25

    def writer(n: int) -> None:
        registry = SqlRegistry(url(db))
        try:
            for i in range(per_thread):
                registry.add_model(model("p", n * 100 + i))
        except BaseException as exc:
            errors.append(exc)
        finally:
            registry.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    registry = SqlRegistry(url(db))
    versions = sorted(m.version for m in registry.models("p"))
    assert versions == list(range(1, 2 * per_thread + 1))
    active = [m for m in registry.models("p") if m.status == "active"]
    assert [m.version for m in active] == [2 * per_thread]
    registry.close()


def test_runs_lifecycle_and_filters(reg: SqlRegistry) -> None:
    a = reg.start_run(run("p", 0, "train"))
    b = reg.start_run(run("p", 1))
    c = reg.start_run(run("q", 2))
    assert a.id is not None
    assert b.id is not None
    assert len({a.id, b.id, c.id}) == 3
    assert a.status == "running"
    done = T0 + timedelta(minutes=5)
    reg.finish_run(
        RunRecord(
            **{
                **vars(a),
                "status": "ok",
                "finished": done,
                "series_in": 4,
                "series_scored": 3,
                "series_skipped": 1,
                "samples_written": 99,
            }
        )
    )
    reg.finish_run(RunRecord(**{**vars(b), "status": "failed", "error": "TSDB down"}))
    got = {r.id: r for r in reg.runs()}
    assert [r.id for r in reg.runs()] == [c.id, b.id, a.id]  # newest started first
    assert got[a.id].finished == done
    assert (got[a.id].series_in, got[a.id].series_scored, got[a.id].samples_written) == (4, 3, 99)
    assert got[b.id].error == "TSDB down"
    assert got[b.id].finished is not None
    assert got[c.id].status == "running"
    assert got[c.id].finished is None
    assert [r.id for r in reg.runs("p")] == [b.id, a.id]
    assert [r.id for r in reg.runs(failed_only=True)] == [b.id]
    assert [r.id for r in reg.runs(limit=1)] == [c.id]
    assert reg.runs("nobody") == []


def test_finish_run_needs_a_known_id(reg: SqlRegistry) -> None:
    with pytest.raises(ValueError, match="start_run"):
        reg.finish_run(run())
    with pytest.raises(ValueError, match="no run 42"):
        reg.finish_run(RunRecord(**{**vars(run()), "id": 42, "status": "ok"}))


def test_interrupt_running_marks_only_running_runs(db: Path) -> None:
    first = SqlRegistry(url(db))
    left = first.start_run(run("p", 0))
    left2 = first.start_run(run("q", 1))
    ok = first.start_run(run("p", 2))
    first.finish_run(RunRecord(**{**vars(ok), "status": "ok"}))
    first.close()  # the "killed" daemon
    second = SqlRegistry(url(db))
    assert second.interrupt_running() == 2
    assert second.interrupt_running() == 0
    statuses = {r.id: r.status for r in second.runs()}
    assert statuses == {left.id: "interrupted", left2.id: "interrupted", ok.id: "ok"}
    assert {r.id for r in second.runs(failed_only=True)} == {left.id, left2.id}
    assert all(r.finished is not None for r in second.runs())
    second.close()


def test_watermark_upsert_and_forget(reg: SqlRegistry) -> None:
    assert reg.watermark("p") is None
    reg.set_watermark("p", T0)
    assert reg.watermark("p") == T0
    later = datetime(2026, 3, 1, 14, 30, tzinfo=timezone(timedelta(hours=2)))
    reg.set_watermark("p", later)
    got = reg.watermark("p")
    assert got == later
    assert got is not None
    assert got.tzinfo is UTC
    reg.set_watermark("q", T0)
    reg.add_model(model("p"))
    reg.forget_pipeline("p")
    reg.forget_pipeline("p")
    assert reg.watermark("p") is None
    assert reg.watermark("q") == T0
    assert len(reg.models("p")) == 1  # history stays


def test_naive_datetimes_are_refused(reg: SqlRegistry) -> None:
    with pytest.raises(ValueError, match="naive"):
        reg.set_watermark("p", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        reg.add_model(ModelRecord(**{**vars(model()), "created": datetime(2026, 1, 1)}))
    assert reg.models() == []


def test_sqlite_connections_use_wal_and_a_busy_timeout(reg: SqlRegistry, db: Path) -> None:
    with reg._engine.connect() as conn:
        pragma = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "busy_timeout", "synchronous", "foreign_keys")
        }
    assert pragma == {
        "journal_mode": "wal",
        "busy_timeout": 5000,
        "synchronous": 1,
        "foreign_keys": 1,
    }
    assert db.parent.is_dir()  # the parent directory was created


def test_an_appended_migration_upgrades_and_keeps_data(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = SqlRegistry(url(db))
    old.add_model(model("p"))
    started = old.start_run(run())
    old.close()
    note = schema.add_column("runs", Column("note", Text))
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, note])
    new = SqlRegistry(url(db))
    known = len(schema.MIGRATIONS)
    assert new.schema_version() == known
    assert "note" in {c["name"] for c in inspect(new._engine).get_columns("runs")}
    assert [r.id for r in new.runs()] == [started.id]
    assert new.active_model("p") is not None
    new.close()
    SqlRegistry(url(db)).close()  # opening again applies nothing twice
    with sqlite3.connect(db) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert versions == [(v,) for v in range(1, known + 1)]


def test_a_failing_migration_leaves_the_old_schema(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    SqlRegistry(url(db)).close()
    before = len(schema.MIGRATIONS)
    note = schema.add_column("runs", Column("note", Text))
    broken = schema.add_column("no_such_table", Column("x", Text))
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, note, broken])
    with pytest.raises(RegistryUnavailable, match="upgrading the schema"):
        SqlRegistry(url(db))
    with sqlite3.connect(db) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (before,)
    assert "note" not in columns  # the first new step rolled back with the broken one


def test_a_newer_schema_is_refused(db: Path) -> None:
    SqlRegistry(url(db)).close()
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_version (version, applied) VALUES (7, 0)")
    with pytest.raises(
        RegistrySchemaTooNew, match=rf"schema version 7.*up to {len(schema.MIGRATIONS)}"
    ):
        SqlRegistry(url(db))


def test_an_unusable_location_is_our_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(RegistryUnavailable, match="cannot create its directory"):
        SqlRegistry(url(blocker / "sub" / "registry.db"))
    with pytest.raises(RegistryUnavailable, match="registry"):
        SqlRegistry(url(tmp_path))  # a directory, not a database file


def test_a_bad_url_is_a_config_error_and_passwords_are_masked() -> None:
    with pytest.raises(ConfigError, match=r"storage\.registry_url"):
        SqlRegistry("not a url at all")
    with pytest.raises(RegistryUnavailable) as caught:
        SqlRegistry("postgresql://oa:hunter2@127.0.0.1:1/oa")
    assert "hunter2" not in str(caught.value)
    assert "oa:***@127.0.0.1:1/oa" in str(caught.value)


def test_ping_fails_once_the_database_is_gone(reg: SqlRegistry, db: Path) -> None:
    reg.ping()
    reg.close()
    for leftover in db.parent.iterdir():
        leftover.unlink()
    db.parent.rmdir()
    with pytest.raises(RegistryUnavailable, match="ping"):
        reg.ping()


KILL_MID_TRANSACTION = textwrap.dedent(
    """
    import os, sys
    from sqlalchemy import insert, update
    from openanomaly.adapters.model_registry import SqlRegistry
    from openanomaly.adapters.model_registry.schema import MODELS, WATERMARKS

    reg = SqlRegistry(sys.argv[1])
    with reg._write() as conn:
        conn.execute(update(MODELS).values(status="retired"))
        conn.execute(insert(MODELS).values(
            pipeline="p", version=2, config_hash="half", engine="e", artifact_uri="file:///x",
            sha256="00", size=1, created=0, status="active", series_count=1, train_start=0,
            train_end=0, fit_seconds=0.0))
        conn.execute(insert(WATERMARKS).values(pipeline="p", at=0))
        sys.stdout.write("inserted\\n")
        sys.stdout.flush()
        os._exit(9)
    """
)


def test_a_process_killed_mid_transaction_leaves_a_consistent_registry(db: Path) -> None:
    reg = SqlRegistry(url(db))
    first = reg.add_model(model("p"))
    reg.close()
    done = subprocess.run(
        [sys.executable, "-c", KILL_MID_TRANSACTION, url(db)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 9, done.stderr
    assert done.stdout == "inserted\n"
    reg = SqlRegistry(url(db))
    assert reg.models("p") == [first]
    assert reg.active_model("p") == first
    assert reg.watermark("p") is None
    assert reg.add_model(model("p", 2)).version == 2
    with reg._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    reg.close()

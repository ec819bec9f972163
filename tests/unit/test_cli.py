"""The command line as users run it: a real subprocess, exit codes, and never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from openanomaly import __version__
from openanomaly.config.schema import pipeline_file_schema

ROOT = Path(__file__).resolve().parents[2]


def oa(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
    clean["PYTHONPATH"] = str(ROOT)  # custom engines in tests/fixtures
    result = subprocess.run(
        [sys.executable, "-m", "openanomaly", *args],
        cwd=cwd,
        check=False,
        env=clean | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "pipelines.d").mkdir()
    (tmp_path / "pipelines.d" / "ok.yaml").write_text("name: ok\nquery: up\n")
    return tmp_path


def test_validate_ok_exits_0(project: Path) -> None:
    result = oa("validate", cwd=project)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "1 valid pipeline(s), 0 problem(s)" in result.stderr


def test_validate_prints_each_problem_and_exits_1(project: Path) -> None:
    bad = project / "pipelines.d" / "bad.yaml"
    bad.write_text("name: bad\nquery: up\nstep: 5\ntrain:\n  windw: 1d\n")
    result = oa("validate", cwd=project)
    assert result.returncode == 1
    shown = bad.relative_to(project)  # the default pipelines_dir is relative to the cwd
    assert result.stdout.splitlines() == [
        f"{shown}:3: step: '5' has no unit; write e.g. 5s or 5m",
        f"{shown}:5: train.windw: unknown key 'windw' (did you mean 'window'?)",
    ]
    assert "1 valid pipeline(s), 2 problem(s)" in result.stderr


def test_validate_explicit_paths_and_json(project: Path) -> None:
    other = project / "other.yaml"
    other.write_text("name: ok\nquery: up\n")  # same name as pipelines.d/ok.yaml
    result = oa("validate", "--json", str(project / "pipelines.d"), str(other), cwd=project)
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid_pipelines"] == ["ok"]
    assert report["problems"][0]["field"] == "name"
    assert "duplicate pipeline name 'ok'" in report["problems"][0]["reason"]


def test_validate_reports_settings_problems_too(project: Path) -> None:
    result = oa("validate", cwd=project, env={"OA_TSDB__TIMEOUT": "forever"})
    assert result.returncode == 1
    assert result.stdout.startswith(
        "env OA_TSDB__TIMEOUT: tsdb.timeout: 'forever' is not a duration"
    )


def test_validate_uses_pipelines_dir_from_settings(project: Path) -> None:
    (project / "elsewhere").mkdir()
    (project / "elsewhere" / "a.yaml").write_text("name: a\nquery: up\n")
    (project / "elsewhere" / "b.yaml").write_text("name: b\nquery: up\n")
    result = oa("validate", "--pipelines-dir", "elsewhere", cwd=project)
    assert result.returncode == 0
    assert "2 valid pipeline(s)" in result.stderr


@pytest.mark.parametrize(
    "args", [["validate", "--no-such-flag"], ["no-such-command"], ["config", "show", "--format"]]
)
def test_usage_errors_exit_2(project: Path, args: list[str]) -> None:
    assert oa(*args, cwd=project).returncode == 2


def test_config_show_masks_secrets_and_applies_precedence(project: Path) -> None:
    (project / "openanomaly.yaml").write_text(
        "tsdb:\n  url: http://file:8428\n  bearer_token: ${TOKEN}\n"
        "  headers: {X-Scope-OrgID: tenant-1}\nstorage:\n  registry_url: postgresql://u:pw@db/oa\n"
    )
    env = {"TOKEN": "t0ps3cret", "OA_DISPATCHER__WORKERS": "6"}
    result = oa(
        "config",
        "show",
        "--tsdb-url",
        "http://flag:8428",
        "--set",
        "log.level=debug",
        cwd=project,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "t0ps3cret" not in result.stdout
    assert ":pw@" not in result.stdout
    assert "url: http://flag:8428" in result.stdout
    assert "workers: 6" in result.stdout
    assert "level: debug" in result.stdout
    assert f"# settings file: {project / 'openanomaly.yaml'}" in result.stdout
    as_json = json.loads(oa("config", "show", "--format", "json", cwd=project, env=env).stdout)
    assert as_json["tsdb"]["bearer_token"] == "**********"
    assert as_json["tsdb"]["headers"]["X-Scope-OrgID"] == "tenant-1"


def test_config_show_with_bad_settings_exits_1(project: Path) -> None:
    (project / "oa.yaml").write_text("log:\n  level: loud\n")
    result = oa("config", "show", "--config", "oa.yaml", cwd=project)
    assert result.returncode == 1
    assert f"{project / 'oa.yaml'}:2: log.level: Input should be" in result.stdout


def test_bad_set_syntax_is_a_user_error(project: Path) -> None:
    result = oa("config", "show", "--set", "no-equals-sign", cwd=project)
    assert result.returncode == 1
    assert "--set no-equals-sign: expected KEY=VALUE" in result.stdout


def test_schema_prints_and_writes_the_pipeline_schema(project: Path) -> None:
    result = oa("schema", cwd=project)
    assert json.loads(result.stdout) == pipeline_file_schema()
    assert oa("schema", "-o", "s.json", cwd=project).returncode == 0
    assert json.loads((project / "s.json").read_text()) == pipeline_file_schema()


def test_version(project: Path) -> None:
    result = oa("version", cwd=project)
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"openanomaly {__version__}"
    assert "statsforecast" in result.stdout


def test_run_keeps_going_without_a_tsdb_and_stops_on_sigterm(project: Path) -> None:
    """The daemon starts with a bad pipeline file and no reachable TSDB: it reports the bad
    file, records the failed train, keeps serving, and exits 0 on SIGTERM."""
    import signal
    import time

    from openanomaly.local_tsdb import free_port

    (project / "pipelines.d" / "bad.yaml").write_text("name: bad\nquery: up\nstep: x\n")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
    port = free_port()
    args = ["--set", "log.format=json", "--tsdb-url", f"http://127.0.0.1:{free_port()}"]
    args += ["--set", f"http.listen=127.0.0.1:{port}", "--set", "tsdb.retry.max_attempts=1"]
    daemon = subprocess.Popen(
        [sys.executable, "-m", "openanomaly", "run", *args],
        cwd=project,
        env=clean,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert daemon.stderr is not None
    messages: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not any("train failed" in m for m in messages):
            line = daemon.stderr.readline()
            if not line:
                break
            messages.append(json.loads(line)["msg"])
        assert any(m.startswith("pipeline ok loaded from") for m in messages), messages
        assert any("pipeline not loaded:" in m and "bad.yaml:3: step:" in m for m in messages)
        assert any(m.startswith("ok: train failed: TSDBUnavailable") for m in messages), messages
        daemon.send_signal(signal.SIGTERM)
        rest = daemon.communicate(timeout=60)[1]
    finally:
        daemon.kill()
    assert daemon.returncode == 0, rest
    assert "Traceback" not in rest
    assert '"msg": "stopped"' in rest


def test_run_refuses_bad_settings(project: Path) -> None:
    result = oa("run", "--set", "dispatcher.kind=kafka", cwd=project)
    assert result.returncode == 1
    assert (
        "--set dispatcher.kind: dispatcher.kind: Input should be 'threads' or 'celery'"
        in result.stdout
    )


@pytest.mark.parametrize(
    "command", [[], ["validate"], ["schema"], ["config", "show"], ["version"], ["run"]]
)
def test_every_command_has_help(project: Path, command: list[str]) -> None:
    result = oa(*command, "--help", cwd=project)
    assert result.returncode == 0
    assert "Usage" in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "openanomaly"
    assert script.exists()
    result = subprocess.run(
        [str(script), "version"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert result.stdout.startswith("openanomaly ")


def test_internal_errors_exit_3_with_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from openanomaly import cli

    def broken() -> None:
        raise RuntimeError("kaput")

    monkeypatch.setattr(cli, "app", broken)
    monkeypatch.delenv("OA_DEBUG", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert "internal error: RuntimeError: kaput" in err
    assert "OA_DEBUG=1" in err
    monkeypatch.setenv("OA_DEBUG", "1")
    with pytest.raises(RuntimeError, match="kaput"):
        cli.main()


def test_schema_to_an_unwritable_place_is_a_user_error(project: Path) -> None:
    result = oa("schema", "-o", str(project / "missing-dir" / "s.json"), cwd=project)
    assert result.returncode == 1
    assert "cannot write: No such file or directory" in result.stdout


def test_run_with_an_unusable_data_dir_or_no_pipelines_dir(project: Path) -> None:
    (project / "afile").write_text("")
    result = oa("run", "--data-dir", "afile/sub", cwd=project)
    assert result.returncode == 1
    assert "storage.data_dir: cannot create afile/sub" in result.stdout
    result = oa("run", "--pipelines-dir", "nowhere", cwd=project)
    assert result.returncode == 1
    assert "pipelines_dir: nowhere is not a directory" in result.stdout


def test_validate_still_checks_pipelines_when_settings_are_bad(project: Path) -> None:
    (project / "openanomaly.yaml").write_text("log: {level: loud}\n")
    (project / "pipelines.d" / "bad.yaml").write_text("name: bad\nquery: up\nstep: x\n")
    result = oa("validate", cwd=project)
    assert result.returncode == 1
    assert "log.level" in result.stdout
    assert "pipelines.d/bad.yaml:3: step:" in result.stdout

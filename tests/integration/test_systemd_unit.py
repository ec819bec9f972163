"""deploy/systemd/openanomaly.service: systemd accepts it, its hardening rates OK, its
environment is valid settings, and the daemon speaks the notify protocol the unit declares.

`systemd-analyze verify` needs no running systemd, but it refuses a unit whose ExecStart binary
does not exist; the shipped unit names /usr/local/bin/openanomaly (where an install links it),
so the test verifies a copy whose ExecStart runs this environment's `openanomaly` with the same
arguments. Everything else in the copy is the shipped unit, byte for byte.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openanomaly.config.settings import JobSettings
from openanomaly.config.settings_loader import env_overrides, load_settings
from openanomaly.local_tsdb import free_port
from tests.conftest import require_executable

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "systemd" / "openanomaly.service"
ENV_EXAMPLE = ROOT / "deploy" / "systemd" / "openanomaly.env.example"
SHUTDOWN_GRACE = JobSettings().shutdown_grace.total_seconds()


def unit() -> dict[str, list[tuple[str, str]]]:
    """Sections -> (key, value) in order; systemd allows a key more than once."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        assert current is not None, f"{line!r} is outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line!r}"
        current.append((key.strip(), value.strip()))
    return sections


def service(key: str) -> list[str]:
    return [value for k, value in unit()["Service"] if k == key]


def one(key: str) -> str:
    (value,) = service(key)
    return value


def seconds(text: str) -> float:
    """systemd time spans as this unit writes them: 90s, 2min, 3min, 5s."""
    for suffix, factor in (("min", 60), ("ms", 0.001), ("s", 1)):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    raise AssertionError(f"unexpected time span {text!r}")


def unit_environment() -> dict[str, str]:
    pairs = (item.partition("=") for value in service("Environment") for item in shlex.split(value))
    return {name: value for name, _, value in pairs}


def test_the_unit_is_a_notify_service_with_a_watchdog_and_enough_time_to_stop() -> None:
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert 30 <= seconds(one("WatchdogSec")) <= 600
    # systemd kills what is still running after TimeoutStopSec: jobs get shutdown_grace, then
    # the outbox is flushed for as long again.
    assert seconds(one("TimeoutStopSec")) > 2 * SHUTDOWN_GRACE
    command = shlex.split(one("ExecStart"))
    assert Path(command[0]).is_absolute()
    assert command[0].endswith("/openanomaly")
    assert command[1:] == ["run", "--config", "/etc/openanomaly/openanomaly.yaml"]
    assert one("ExecReload").endswith("kill -HUP $MAINPID")  # SIGHUP reloads the pipelines
    assert one("Restart") == "on-failure"
    assert one("DynamicUser") == "yes"
    assert one("StateDirectory") == "openanomaly"
    assert one("WorkingDirectory") == "/var/lib/openanomaly"
    assert one("EnvironmentFile") == "-/etc/openanomaly/openanomaly.env"  # optional


def test_the_hardening_leaves_what_the_daemon_needs() -> None:
    assert one("ProtectSystem") == "strict"
    assert one("CapabilityBoundingSet") == ""
    assert one("SystemCallFilter") == "@system-service"
    # sd_notify is a datagram on an AF_UNIX socket; the TSDB is reached over IP.
    assert set(one("RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    # torch's oneDNN (the neural extra) and numba generate machine code at run time.
    assert one("MemoryDenyWriteExecute") == "no"


def test_the_unit_environment_is_valid_settings_pointing_at_the_state_directory(
    tmp_path: Path,
) -> None:
    env = unit_environment()
    assert env["OA_STORAGE__DATA_DIR"] == f"/var/lib/{one('StateDirectory')}"
    settings = load_settings(None, env=env, cwd=tmp_path).settings
    assert str(settings.storage.data_dir) == "/var/lib/openanomaly"


def test_every_setting_in_the_env_example_is_a_valid_setting(tmp_path: Path) -> None:
    examples: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        assignment = line.removeprefix("#")
        name, sep, value = assignment.partition("=")
        if sep and name.isidentifier() and name.isupper():
            (examples[name],) = shlex.split(value)  # systemd removes the quotes as sh would
    settings_vars = {name: value for name, value in examples.items() if name.startswith("OA_")}
    assert len(settings_vars) >= 5
    assert len(env_overrides(settings_vars)) == len(settings_vars)
    # The example offers a bearer token or basic auth, which exclude each other.
    bearer = {"OA_TSDB__BEARER_TOKEN": settings_vars.pop("OA_TSDB__BEARER_TOKEN")}
    for env in (settings_vars, bearer):
        load_settings(None, env=env, cwd=tmp_path)


def _verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart's program replaced by this environment's `openanomaly`."""
    program = Path(sys.executable).parent / "openanomaly"
    assert program.is_file(), f"{program}: the project is not installed in this environment"
    shipped = shlex.split(one("ExecStart"))[0]
    text = UNIT.read_text()
    assert text.count(f"ExecStart={shipped} ") == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={shipped} ", f"ExecStart={program} "))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = require_executable("systemd-analyze", "systemd")
    copy = _verifiable_copy(tmp_path)
    result = subprocess.run(
        [analyze, "verify", "--man=no", "--recursive-errors=no", str(copy)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # verify exits 0 on unknown keys and unparsable values, and only warns: no word about ours.
    about_ours = [line for line in output.splitlines() if UNIT.name in line]
    assert not about_ours, "\n".join(about_ours)


def test_systemd_analyze_security_rates_the_unit_ok(tmp_path: Path) -> None:
    """Exposure 0 (locked down) to 10 (unprotected); 2.0 and under reads as "OK"."""
    analyze = require_executable("systemd-analyze", "systemd")
    copy = _verifiable_copy(tmp_path)
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=20", "--no-pager", str(copy)],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_the_daemon_speaks_the_notify_protocol_the_unit_declares(tmp_path: Path) -> None:
    """READY=1 once it serves, WATCHDOG=1 at half of WatchdogSec, STOPPING=1 and exit 0 on
    SIGTERM within TimeoutStopSec: what Type=notify and WatchdogSec= expect. (A short watchdog
    here, so the test does not wait for the unit's.)"""
    pipelines = tmp_path / "pipelines.d"
    pipelines.mkdir()
    settings_file = tmp_path / "openanomaly.yaml"
    settings_file.write_text(
        f"tsdb: {{url: 'http://127.0.0.1:{free_port()}'}}\n"
        f"http: {{listen: '127.0.0.1:{free_port()}'}}\n"
        "pipelines_dir: pipelines.d\n"
    )
    notify = tmp_path / "notify"
    command = [
        str(Path(sys.executable).parent / "openanomaly"),
        *shlex.split(one("ExecStart"))[1:],
    ]
    command[command.index("--config") + 1] = str(settings_file)
    env = {
        **os.environ,
        **unit_environment(),
        "OA_STORAGE__DATA_DIR": str(tmp_path / "state"),
        "NOTIFY_SOCKET": str(notify),
        "WATCHDOG_USEC": "1000000",
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(notify))
        listener.settimeout(1)
        process = subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            messages = _receive_until(listener, process, "READY=1", timeout=seconds("90s"))
            messages += _receive_until(listener, process, "WATCHDOG=1", timeout=5)
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            messages += _receive_until(listener, process, "STOPPING=1", timeout=10)
            code = process.wait(timeout=seconds(one("TimeoutStopSec")))
            assert code == 0
            assert time.monotonic() - started < seconds(one("TimeoutStopSec"))
        finally:
            if process.poll() is None:
                process.kill()
            out = process.communicate()[0].decode(errors="replace")
    assert messages.index("READY=1") < messages.index("STOPPING=1"), (messages, out)


def _receive_until(
    listener: socket.socket, process: subprocess.Popen[bytes], wanted: str, timeout: float
) -> list[str]:
    received: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            received.append(listener.recv(256).decode())
        except TimeoutError:
            exited = process.poll()
            assert exited is None, f"the daemon exited ({exited}) before {wanted}"
            continue
        if wanted in received:
            return received
    raise AssertionError(f"no {wanted} within {timeout}s (got {received})")

"""systemd's notify protocol: a datagram to $NOTIFY_SOCKET; nothing without it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from openanomaly.daemon.main import sd_notify


def test_sends_to_the_notify_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        sd_notify("READY=1")
        sd_notify("WATCHDOG=1")
        assert listener.recv(64) == b"READY=1"
        assert listener.recv(64) == b"WATCHDOG=1"


def test_without_systemd_or_with_a_dead_socket_nothing_happens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    sd_notify("READY=1")  # no socket configured: a no-op
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    sd_notify("READY=1")  # configured but absent: swallowed, the daemon must not die of it
    assert not (tmp_path / "gone").exists()

"""`openanomaly run`: the daemon, its HTTP server and its signals, on one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Generator
from typing import TYPE_CHECKING

import uvicorn

from openanomaly.bootstrap import build_dispatch
from openanomaly.daemon.http import create_api
from openanomaly.daemon.metrics import DaemonMetrics
from openanomaly.daemon.service import Daemon
from openanomaly.errors import ConfigError, Problem

if TYPE_CHECKING:
    from openanomaly.bootstrap import App

log = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the daemon owns SIGTERM/SIGINT/SIGHUP."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def sd_notify(message: str) -> None:
    """systemd's notify protocol (READY=1, WATCHDOG=1, STOPPING=1); a no-op elsewhere."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())


async def serve(app: App) -> None:
    settings = app.settings
    metrics = DaemonMetrics()
    outbox = getattr(app.writer, "outbox", None)
    if outbox is not None:
        metrics.outbox(lambda: float(outbox.stats.batches), lambda: float(outbox.stats.bytes))
    dispatch = build_dispatch(app)
    daemon = Daemon(
        app,
        dispatch.dispatcher,
        metrics,
        runner=dispatch.runner,
        lease=dispatch.lease,
        shard_series=dispatch.shard_series,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: daemon.reload(force=True))

    config = uvicorn.Config(
        create_api(daemon),
        host=settings.http.host,
        port=settings.http.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
    server = _Server(config)
    listener = _listen(settings.http.host, settings.http.port)
    await daemon.start()
    http_task = asyncio.create_task(server.serve(sockets=[listener]), name="http")
    watchdog = asyncio.create_task(_watchdog(), name="watchdog")
    await asyncio.sleep(0)
    log.info("listening on http://%s:%d", settings.http.host, settings.http.port)
    sd_notify("READY=1")
    try:
        done, _ = await asyncio.wait(
            [http_task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        if http_task in done and http_task.exception() is not None:
            raise http_task.exception()  # type: ignore[misc]
    finally:
        log.info("stopping: no new runs; waiting for running jobs")
        sd_notify("STOPPING=1")
        watchdog.cancel()
        await daemon.stop()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await http_task
        grace = settings.jobs.shutdown_grace.total_seconds()
        await asyncio.to_thread(app.close, grace)
        log.info("stopped")


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything starts, so a taken port is a clear error and not uvicorn's exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = f"cannot listen on {host}:{port}: {exc.strerror}"
        raise ConfigError([Problem("http.listen", 0, "", reason)]) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


async def _watchdog() -> None:
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit():
        return
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(int(usec) / 2e6)

"""Real Redis and PostgreSQL servers on loopback ports, for integration tests.

In the style of `openanomaly.local_tsdb`: a child process in a directory of our own, on a free
127.0.0.1 port, with a log file, a readiness wait and start/stop/kill. Standard library only (the
readiness checks speak raw RESP to Redis and use PostgreSQL's own `pg_isready`/`psql`).

PostgreSQL refuses to run as root. As root (CI and these machines), initdb and the server run as
the `postgres` user that Debian's package creates, in a private directory under /tmp (pytest's
/tmp/pytest-of-root is mode 700, which that user cannot traverse); `close` removes it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self

from openanomaly.errors import OpenAnomalyError
from openanomaly.local_tsdb import free_port


class ServiceStartError(OpenAnomalyError):
    """A service binary is missing, exited, or did not become ready in time."""


class _LocalService:
    """A server child process on a loopback port. Once started, the port stays fixed, so a test
    can stop (or kill) it and start it again where its clients expect it."""

    name: ClassVar[str]

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.log_path = self.workdir / f"{self.name}.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        raise NotImplementedError

    def popen_options(self) -> dict[str, Any]:
        return {}

    def is_ready(self) -> bool:
        raise NotImplementedError

    def prepare(self) -> None:
        """Runs before each start (PostgreSQL's initdb, the first time)."""

    def start(self, timeout: float = 10.0) -> Self:
        if self.running:
            return self
        self.prepare()
        for _attempt in range(3):
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    self.command(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # own process group: `kill` takes its children too
                    **self.popen_options(),
                )
            if self._wait_ready(timeout):
                self._fixed_port = True  # restarts come back where clients expect them
                return self
            if self._fixed_port or "address already in use" not in self._log_tail().lower():
                break
            self.kill()
            self.port = free_port()  # lost the race for the port: try another
        exited = not self.running
        tail = self._log_tail()
        self.kill()
        state = "exited" if exited else f"was not ready after {timeout:g} s"
        raise ServiceStartError(f"{self.name} on 127.0.0.1:{self.port} {state}:\n{tail}")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                if self.is_ready():
                    return True
            time.sleep(0.05)
        return False

    def _log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM

    def stop(self, timeout: float = 15.0) -> None:
        """Graceful stop, then SIGKILL if it does not exit in time."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(self.stop_signal)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(process)

    def kill(self) -> None:
        """SIGKILL to the whole process group: a crash, as far as the server can tell."""
        process, self._process = self._process, None
        if process is not None:
            self._kill_group(process)

    @staticmethod
    def _kill_group(process: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def close(self) -> None:
        """Stop for good (and drop whatever the service keeps outside `workdir`)."""
        self.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class LocalRedis(_LocalService):
    """`redis-server` with no persistence: data does not survive stop/start (a fresh broker)."""

    name = "redis-server"
    debian_package = "redis-server"

    def __init__(self, workdir: Path, port: int | None = None, *, binary: str | None = None):
        found = binary or shutil.which("redis-server")
        if found is None:
            raise ServiceStartError(
                f"redis-server not found on PATH; install it (Debian: apt-get install "
                f"{self.debian_package})"
            )
        self.binary = found
        super().__init__(workdir, port)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        return [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--logfile", "",  # stdout, which goes to the log file
        ]  # fmt: skip

    def is_ready(self) -> bool:
        return self.ping()

    def ping(self, timeout: float = 1.0) -> bool:
        """A raw-socket PING; True when Redis answers +PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def find_postgres_binary(name: str) -> str | None:
    """A PostgreSQL server binary: Debian keeps them off PATH, in /usr/lib/postgresql/N/bin."""
    candidates: list[Path] = []
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        bindir = subprocess.run(
            ["pg_config", "--bindir"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        candidates.append(Path(bindir) / name)

    def version(path: str) -> int:
        match = re.search(r"/postgresql/(\d+)/", path)
        return int(match.group(1)) if match else 0

    newest_first = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
    candidates += [Path(bindir) / name for bindir in newest_first]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


class LocalPostgres(_LocalService):
    """A throwaway PostgreSQL cluster: superuser `oa`, trust authentication, no fsync, loopback
    TCP only (plus a Unix socket in a private directory). `url` is a SQLAlchemy URL of database
    `oa`; `fresh_database` makes isolated ones on the same server."""

    name = "postgres"
    debian_package = "postgresql"
    stop_signal = signal.SIGINT  # "fast" shutdown: roll back open transactions, then exit
    user = "oa"

    def __init__(self, workdir: Path, port: int | None = None):
        binaries = {name: find_postgres_binary(name) for name in ("initdb", "postgres", "psql")}
        missing = sorted(name for name, path in binaries.items() if path is None)
        if missing:
            raise ServiceStartError(
                f"PostgreSQL {', '.join(missing)} not found (looked in `pg_config --bindir`, "
                f"/usr/lib/postgresql/*/bin and PATH); install it (Debian: apt-get install "
                f"{self.debian_package})"
            )
        self.binaries = {name: str(path) for name, path in binaries.items()}
        super().__init__(workdir, port)
        self._account: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            # initdb and postgres refuse root: run them as `postgres`, somewhere it can reach.
            try:
                self._account = pwd.getpwnam("postgres")
            except KeyError:
                raise ServiceStartError(
                    "running as root, and there is no `postgres` user to run PostgreSQL as "
                    f"(Debian's {self.debian_package} package creates it)"
                ) from None
            home = Path(tempfile.mkdtemp(prefix="oa-pg-"))
            os.chown(home, self._account.pw_uid, self._account.pw_gid)
            self._cleanup: weakref.finalize[Any, Any] | None = weakref.finalize(
                self, shutil.rmtree, home, ignore_errors=True
            )
        else:
            home = self.workdir
            self._cleanup = None
        self.home = home
        self.data_dir = home / "data"
        self.socket_dir = home / "socket"

    @property
    def url(self) -> str:
        return self.database_url("oa")

    def database_url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def popen_options(self) -> dict[str, Any]:
        if self._account is None:
            return {"cwd": self.home}
        return {
            "cwd": self.home,
            "user": self._account.pw_uid,
            "group": self._account.pw_gid,
            "extra_groups": [],
            "env": {**os.environ, "HOME": str(self.home), "USER": "postgres"},
        }

    def prepare(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.socket_dir.mkdir(exist_ok=True)
        if self._account is not None:
            os.chown(self.socket_dir, self._account.pw_uid, self._account.pw_gid)
        command = [
            self.binaries["initdb"],
            "-D", str(self.data_dir),
            "-A", "trust",
            "-U", self.user,
            "--encoding", "UTF8",
            "--locale", "C",
            "--no-sync",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            result = subprocess.run(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                check=False,
                timeout=120,
                **self.popen_options(),
            )
        if result.returncode != 0:
            raise ServiceStartError(f"initdb failed ({result.returncode}):\n{self._log_tail()}")

    def command(self) -> list[str]:
        return [
            self.binaries["postgres"],
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
        ]  # fmt: skip

    def is_ready(self) -> bool:
        return self._psql("SELECT 1", timeout=2).returncode == 0

    def start(self, timeout: float = 30.0) -> Self:
        super().start(timeout)
        if not self._database_exists("oa"):
            self.fresh_database("oa")
        return self

    def _psql(
        self, sql: str, *, database: str = "postgres", timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """psql over loopback TCP as `oa` (trust), ignoring the caller's PG* variables."""
        env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        command = [
            self.binaries["psql"],
            "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1",
            "-h", "127.0.0.1",
            "-p", str(self.port),
            "-U", self.user,
            "-d", database,
            "-c", sql,
        ]  # fmt: skip
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
            timeout=timeout,
        )

    def execute(self, sql: str, *, database: str = "postgres") -> str:
        """Run SQL through psql; returns its unaligned, tuples-only output."""
        result = self._psql(sql, database=database)
        if result.returncode != 0:
            raise OpenAnomalyError(f"psql {sql!r} failed: {result.stderr.strip()}")
        return result.stdout

    def _database_exists(self, name: str) -> bool:
        return self.execute(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip() == "1"

    def fresh_database(self, name: str) -> str:
        """CREATE a new, empty database and return its SQLAlchemy URL."""
        if not _IDENTIFIER.fullmatch(name):
            raise ValueError(
                f"database name {name!r}: use lower-case letters, digits and _ (at most 63)"
            )
        self.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def close(self) -> None:
        self.stop()
        if self._cleanup is not None:
            self._cleanup()  # the private directory under /tmp, data and all

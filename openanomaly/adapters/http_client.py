"""The httpx client both TSDB adapters share: auth, tenancy headers, TLS, timeouts, retries.

Only adapters import this module (the core never sees httpx).
"""

from __future__ import annotations

import email.utils
import ipaddress
import random
import ssl
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from openanomaly import __version__
from openanomaly.config.settings import RetrySettings, TSDBSettings
from openanomaly.errors import OpenAnomalyError

USER_AGENT = f"openanomaly/{__version__}"


class BearerAuth(httpx.Auth):
    def __init__(self, token: str) -> None:
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class FileBearerAuth(httpx.Auth):
    """Bearer token read from a file, re-read whenever the file changes (rotated tokens, e.g.
    Kubernetes service-account tokens), without a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""

    def token(self) -> str:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
            if stamp != self._stamp:
                self._token = self.path.read_text(encoding="utf-8").strip()
                self._stamp = stamp
        except OSError as exc:
            raise OpenAnomalyError(
                f"tsdb.bearer_token_file {self.path}: cannot read ({exc.strerror})"
            ) from None
        return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        yield request


def _auth(settings: TSDBSettings) -> httpx.Auth | None:
    if settings.bearer_token is not None:
        return BearerAuth(settings.bearer_token.get_secret_value())
    if settings.bearer_token_file is not None:
        return FileBearerAuth(settings.bearer_token_file)
    basic = settings.basic_auth
    if basic.username is not None:
        if basic.password_file is not None:
            try:
                password = basic.password_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise OpenAnomalyError(
                    f"tsdb.basic_auth.password_file {basic.password_file}: cannot read "
                    f"({exc.strerror})"
                ) from None
        else:
            password = basic.password.get_secret_value() if basic.password else ""
        return httpx.BasicAuth(basic.username, password)
    return None


def _verify(settings: TSDBSettings) -> ssl.SSLContext | bool:
    tls = settings.tls
    if tls.insecure_skip_verify:
        return False
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise OpenAnomalyError(f"tsdb.tls: cannot load certificates: {exc}") from None
    return context


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def build_client(
    settings: TSDBSettings,
    *,
    extra_headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    max_connections: int = 8,
) -> httpx.Client:
    """A client for the TSDB; `extra_headers` (protocol headers) override the user's headers."""
    headers = {"User-Agent": USER_AGENT, **settings.headers, **(extra_headers or {})}
    timeout = settings.timeout.total_seconds()
    return httpx.Client(
        headers=headers,
        auth=_auth(settings),
        verify=_verify(settings),
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        ),
        transport=transport,
        # Proxies from the environment apply to remote TSDBs, never to a local one.
        trust_env=not is_loopback(settings.url),
        follow_redirects=False,
    )


def backoff_delays(
    retry: RetrySettings, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    """Seconds to wait before each retry (attempts - 1 values): full jitter, capped."""
    initial = retry.initial_backoff.total_seconds()
    cap = retry.max_backoff.total_seconds()
    for attempt in range(retry.max_attempts - 1):
        yield rand() * min(cap, initial * (2**attempt))


def retry_after_seconds(response: httpx.Response, now: Callable[[], float] = time.time) -> float:
    """`Retry-After` as seconds (delta-seconds or an HTTP date); 0 when absent or invalid."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return 0.0
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 0.0
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def server_message(response: httpx.Response, limit: int = 2000) -> str:
    """The server's error text, verbatim: the `error` field of a Prometheus API error, else
    the body."""
    try:
        body = response.json()
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return str(body["error"])
    except ValueError:
        pass
    return response.text[:limit].strip() or f"HTTP {response.status_code}"


RETRIED_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Outcome:
    """How a request ended: `response` is a success or a status not worth retrying; None
    when retries ran out, with the last failure in `message`."""

    response: httpx.Response | None
    message: str
    attempts: int


def post_with_retries(
    client: httpx.Client,
    url: str,
    retry: RetrySettings,
    *,
    sleep: Callable[[float], None],
    retries: bool = True,
    deadline: float | None = None,
    on_retry: Callable[[int, str], None] | None = None,
    **request: Any,
) -> Outcome:
    """POST, retrying connection errors, timeouts, 429 and 5xx with full-jitter backoff;
    `Retry-After` is honoured up to `retry.max_backoff`; no retry would end past `deadline`
    (a `time.monotonic()` value)."""
    delays = backoff_delays(retry) if retries else iter(())
    cap = retry.max_backoff.total_seconds()
    attempt = 0
    while True:
        attempt += 1
        try:
            response = client.post(url, **request)
        except httpx.TransportError as exc:
            message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            wait = 0.0
        else:
            if response.status_code not in RETRIED_STATUS:
                return Outcome(response, "", attempt)
            message = f"HTTP {response.status_code}: {server_message(response)}"
            wait = min(retry_after_seconds(response), cap)
        delay = next(delays, None)
        if (
            delay is not None
            and deadline is not None
            and time.monotonic() + max(delay, wait) >= deadline
        ):
            delay = None  # a retry would end past the deadline
        if delay is None:
            return Outcome(None, message, attempt)
        if on_retry is not None:
            on_retry(attempt, message)
        sleep(max(delay, wait))

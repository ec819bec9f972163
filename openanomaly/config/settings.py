"""The process settings: one pydantic model, the contract of `openanomaly.yaml`.

Loading (files, env vars, flags, `${ENV}` secrets) lives in `settings_loader`; this module only
says what is valid. Paths written in a settings file are resolved against that file's directory
(as Prometheus does), defaults and env vars/flags against the working directory.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from openanomaly.config.types import Duration
from openanomaly.durations import format_duration

DEFAULT_HTTP_PORT = 8495
"""Our HTTP port (healthz, metrics, API). Chosen to stay clear of vmanomaly's 8490 and of the
exporters' 9100-9999 range, so both can run side by side during a migration."""

_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Headers the remote-write protocol owns; a user override would break the protocol.
RESERVED_HEADERS = frozenset(
    {
        "content-encoding",
        "content-type",
        "user-agent",
        "x-prometheus-remote-write-version",
        "content-length",
        "host",
    }
)


class StrictModel(BaseModel):
    """Unknown keys are errors: a typo must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class BasicAuth(StrictModel):
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None

    @model_validator(mode="after")
    def _one_password(self) -> BasicAuth:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        if self.username is None and (self.password is not None or self.password_file):
            raise ValueError("a password needs a username")
        return self

    @property
    def enabled(self) -> bool:
        return self.username is not None


class TLS(StrictModel):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _cert_and_key(self) -> TLS:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together (client certificate)")
        return self


def _check_http_url(value: str, field: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{field} must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


class RetrySettings(StrictModel):
    """Exponential backoff with full jitter: attempt n waits a random time up to
    min(max_backoff, initial_backoff * 2**n); `Retry-After` from the server wins when longer."""

    max_attempts: int = Field(5, ge=1, le=100, description="Tries per request, the first included")
    initial_backoff: Duration = timedelta(milliseconds=500)
    max_backoff: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _order(self) -> RetrySettings:
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must be at least initial_backoff")
        return self


class TSDBSettings(StrictModel):
    url: str = Field(
        "http://127.0.0.1:8428",
        description="Prometheus HTTP API base; query_range is {url}/api/v1/query_range",
    )
    write_url: str | None = Field(None, description="Remote write URL; default {url}/api/v1/write")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra headers, e.g. X-Scope-OrgID for tenants"
    )
    basic_auth: BasicAuth = BasicAuth()
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    tls: TLS = TLS()
    timeout: Duration = timedelta(seconds=30)
    query_delay: Duration = Field(
        timedelta(seconds=30),
        description="Points newer than now minus this are not scored yet (TSDB ingestion lag)",
    )
    max_points_per_request: int = Field(
        10_000,
        ge=2,
        le=30_000,
        description="Longer ranges are split; Prometheus refuses > 11,000 points per series",
    )
    max_samples_per_request: int = Field(
        250_000,
        ge=1_000,
        description="Longer answers are split in time so one response stays small in memory",
    )
    read_concurrency: int = Field(4, ge=1, le=64, description="Range chunks fetched at once")
    retry: RetrySettings = RetrySettings()

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value, "url")

    @field_validator("write_url")
    @classmethod
    def _write_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_http_url(value, "write_url")

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"'{name}' is not a valid HTTP header name")
            if name.lower() in RESERVED_HEADERS:
                raise ValueError(f"header '{name}' is set by OpenAnomaly and cannot be overridden")
        return value

    @field_validator("timeout")
    @classmethod
    def _positive_timeout(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("timeout must be greater than 0s")
        return value

    @model_validator(mode="after")
    def _one_auth(self) -> TSDBSettings:
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("give either bearer_token or bearer_token_file, not both")
        has_bearer = self.bearer_token is not None or self.bearer_token_file is not None
        if has_bearer and self.basic_auth.enabled:
            raise ValueError("choose one authentication: basic_auth or a bearer token")
        return self

    @property
    def effective_write_url(self) -> str:
        return self.write_url or f"{self.url}/api/v1/write"


class RemoteWriteSettings(StrictModel):
    max_samples_per_request: int = Field(10_000, ge=1, le=1_000_000)
    concurrency: int = Field(4, ge=1, le=64, description="Requests in flight at once")
    retry: RetrySettings = RetrySettings()
    outbox_max_bytes: ByteSize = Field(
        ByteSize(1 << 30), description="Undelivered batches kept on disk (e.g. 512MiB, 2GB)"
    )
    outbox_max_age: Duration = Field(
        timedelta(days=7), description="Undelivered batches older than this are dropped"
    )


class StorageSettings(StrictModel):
    data_dir: Path = Field(
        Path("data"), description="SQLite registry, model artifacts and write outbox"
    )
    registry_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///{data_dir}/registry.db"
    )
    artifacts_url: str | None = Field(
        None, description="fsspec URL; default file://{data_dir}/models (s3:// with the s3 extra)"
    )
    artifacts_options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec/s3fs options for artifacts_url, e.g. endpoint_url, key, secret",
    )

    @property
    def effective_registry_url(self) -> str:
        return self.registry_url or f"sqlite:///{self.data_dir.absolute() / 'registry.db'}"

    @property
    def effective_artifacts_url(self) -> str:
        return self.artifacts_url or f"file://{self.data_dir.absolute() / 'models'}"


class DispatcherSettings(StrictModel):
    kind: Literal["threads", "celery"] = "threads"
    workers: int = Field(
        2, ge=1, le=256, description="threads: threads that run jobs; celery: worker processes"
    )
    broker_url: SecretStr | None = Field(
        None, description="celery: the broker, e.g. redis://redis:6379/0 (required for celery)"
    )
    result_backend: SecretStr | None = Field(
        None, description="celery: where results go; default the broker_url"
    )
    shard_series: int = Field(
        1000, ge=1, description="celery: series per infer job; larger pipelines are split"
    )
    lease_ttl: Duration = Field(
        timedelta(seconds=30),
        description="celery: a dead leader's lease expires after this; a standby takes over",
    )
    max_retries: int = Field(
        3, ge=0, le=100, description="celery: retries of a job whose TSDB or registry was down"
    )
    visibility_timeout: Duration | None = Field(
        None,
        description="celery/redis: an unacknowledged job is redelivered after this; default "
        "the longest job timeout plus 5 minutes",
    )

    @field_validator("lease_ttl")
    @classmethod
    def _lease(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=3):
            raise ValueError("lease_ttl must be at least 3s (it is renewed every third)")
        return value

    @model_validator(mode="after")
    def _broker(self) -> DispatcherSettings:
        if self.kind == "celery" and self.broker_url is None:
            raise ValueError("the celery dispatcher needs broker_url, e.g. redis://host:6379/0")
        return self


class JobSettings(StrictModel):
    train_timeout: Duration = Field(
        timedelta(hours=1), description="A train run longer than this is recorded as failed"
    )
    infer_timeout: Duration = Field(
        timedelta(minutes=5), description="An infer run longer than this is recorded as failed"
    )
    shutdown_grace: Duration = Field(
        timedelta(seconds=30), description="On SIGTERM, how long running jobs may finish"
    )
    keep_models: int = Field(
        3, ge=1, le=1000, description="Model versions (artifacts) kept per pipeline"
    )
    reload_interval: Duration = Field(
        timedelta(seconds=10), description="How often pipelines_dir is checked for changes"
    )

    @field_validator("train_timeout", "infer_timeout", "reload_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be greater than 0s")
        return value


class HttpSettings(StrictModel):
    listen: str = Field(
        f"127.0.0.1:{DEFAULT_HTTP_PORT}",
        description="host:port for /healthz, /readyz, /metrics and the API",
    )
    api_token: SecretStr | None = Field(
        None,
        description="Bearer token for POST /api/v1/...; without one those endpoints are off",
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ValueError(f"listen must be host:port (e.g. 127.0.0.1:8495), got {value!r}")
        if not host:
            raise ValueError("listen needs a host; use 0.0.0.0:PORT to listen on every address")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


class LogSettings(StrictModel):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"

    @field_validator("level", "format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value


class Settings(StrictModel):
    """Everything the process needs to know; validated once at start-up."""

    tsdb: TSDBSettings = TSDBSettings()
    remote_write: RemoteWriteSettings = RemoteWriteSettings()
    storage: StorageSettings = StorageSettings()
    dispatcher: DispatcherSettings = DispatcherSettings()
    http: HttpSettings = HttpSettings()
    jobs: JobSettings = JobSettings()
    pipelines_dir: Path = Path("pipelines.d")
    log: LogSettings = LogSettings()

    @model_validator(mode="after")
    def _visibility(self) -> Settings:
        longest = max(self.jobs.train_timeout, self.jobs.infer_timeout)
        visible = self.dispatcher.visibility_timeout
        if visible is not None and visible <= longest:
            raise ValueError(
                f"dispatcher.visibility_timeout ({format_duration(visible)}) must be longer than "
                f"the longest job timeout ({format_duration(longest)}), or a running job is "
                "delivered to a second worker"
            )
        return self

    @property
    def visibility_timeout(self) -> timedelta:
        longest = max(self.jobs.train_timeout, self.jobs.infer_timeout)
        return self.dispatcher.visibility_timeout or longest + timedelta(minutes=5)

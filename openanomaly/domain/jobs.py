"""What a dispatcher carries: a job (train a pipeline, or score one shard of a window) and its
result, as plain data with a JSON form, so the same job runs on a local thread or on a Celery
worker on another machine.

A job carries the pipeline's definition, not just its name: a worker needs no `pipelines.d/`,
and it can never score with a different version of the file than the scheduler planned with
(`config_hash` is checked on arrival).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

JobKind = Literal["train", "infer"]


@dataclass(frozen=True)
class Job:
    kind: JobKind
    pipeline: str  # its name, for logs, metrics and task routing
    definition: str  # the pipeline as JSON (Pipeline.model_dump_json)
    config_hash: str
    scheduled: datetime
    # infer only: the model version and the window [first, last] the scheduler planned
    model_version: int = 0
    first: datetime | None = None
    last: datetime | None = None
    shard: int = 0
    shards: int = 1

    @property
    def name(self) -> str:
        """`infer:cpu`, or `infer:cpu#2/4` for a shard: for logs and metrics."""
        suffix = f"#{self.shard}/{self.shards}" if self.shards > 1 else ""
        return f"{self.kind}:{self.pipeline}{suffix}"

    def to_json(self) -> str:
        data = asdict(self)
        for key in ("scheduled", "first", "last"):
            data[key] = None if data[key] is None else data[key].isoformat()
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Job:
        data: dict[str, Any] = json.loads(text)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown job fields {sorted(unknown)} (a newer scheduler?)")
        for key in ("scheduled", "first", "last"):
            if data.get(key) is not None:
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)


@dataclass(frozen=True)
class JobResult:
    status: Literal["ok", "failed"]
    error: str | None = None
    series_in: int = 0
    series_scored: int = 0
    series_skipped: int = 0
    samples_written: int = 0
    needs_retrain: bool = False  # the model could not be used; the scheduler retrains
    retryable: bool = False  # a dependency was down (TSDB, registry): another try may work
    worker: str = ""  # who ran it (host:pid), for the run's log line

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobResult:
        data: dict[str, Any] = json.loads(text)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LeaseState:
    """The outcome of taking or renewing a leader lease."""

    leader: bool
    holder: str  # who holds it now (us or another instance)
    fence: int  # the holder's fencing token

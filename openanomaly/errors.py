"""Our own error types.

Adapters translate third-party exceptions into these at their edge, so the core and the CLI only
ever reason about the situations below, never about httpx, SQLAlchemy or a Nixtla library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class OpenAnomalyError(Exception):
    """Base of every error we raise on purpose. The CLI prints these without a traceback."""


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the user's input, located as precisely as we can.

    `where` is a file path, or `env OA_X`, or a CLI flag; `line` is 1-based, or 0 when unknown.
    """

    where: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        location = f"{self.where}:{self.line}" if self.line else self.where
        field = f" {self.field}:" if self.field else ""
        return f"{location}:{field} {self.reason}"


class ConfigError(OpenAnomalyError):
    """Settings or pipeline files are invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class MissingExtra(OpenAnomalyError):
    """An optional adapter was asked for but its extra is not installed."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(
            f"{feature} needs the '{extra}' extra (module '{module}' is not installed): "
            f"pip install 'openanomaly[{extra}]'  (or: uv sync --extra {extra})"
        )


class TSDBUnavailable(OpenAnomalyError):
    """The TSDB did not answer (connection refused, timeout, 5xx) within the retry budget."""


class TSDBQueryError(OpenAnomalyError):
    """The TSDB refused the query (bad PromQL, bad range). Carries the server's message verbatim."""


class ArtifactStoreUnavailable(OpenAnomalyError):
    """Object storage did not answer (network, credentials): the run fails and is retried;
    unlike ArtifactCorrupt this never triggers a retrain."""


class ArtifactCorrupt(OpenAnomalyError):
    """A stored model artifact is missing, truncated or does not match its recorded checksum."""


class IncompatibleArtifact(OpenAnomalyError):
    """A stored model was written by a library version we cannot load. The daemon retrains."""


class RegistryUnavailable(OpenAnomalyError):
    """The model registry database could not be opened, reached or written (its URL is named,
    password masked). The daemon reports not ready and retries; it never guesses state."""


class RegistrySchemaTooNew(OpenAnomalyError):
    """The registry database was migrated by a newer OpenAnomaly than this one. We refuse to
    touch it rather than misread it: upgrade OpenAnomaly or point at another database."""


class DispatchUnavailable(OpenAnomalyError):
    """A job could not be handed to the dispatcher (cluster mode: the broker is unreachable)."""


class PipelineRejected(ConfigError):
    """Pipeline text offered for saving is invalid, or is not the one pipeline it was saved as."""


class PipelineConflict(OpenAnomalyError):
    """Saving a pipeline would replace a definition without being asked to, or would define a
    name another file already defines."""

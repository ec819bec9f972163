"""The situations the UI shows the user, in our terms: httpx and the TSDB reader's errors are
translated into these at the edge (client.py, tsdb.py), so the pages never see a library error."""

from __future__ import annotations

from collections.abc import Sequence

from openanomaly.errors import OpenAnomalyError, Problem


class DaemonUnreachable(OpenAnomalyError):
    """The daemon's HTTP API did not answer (refused, timed out, name not resolved)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"Cannot reach the OpenAnomaly daemon at {url}: {reason}")


class ApiError(OpenAnomalyError):
    """The daemon answered with an HTTP error. `problems` holds the located problems of a 422
    for invalid pipelines or times (empty otherwise)."""

    def __init__(self, status: int, message: str, problems: Sequence[Problem] = ()) -> None:
        self.status, self.message, self.problems = status, message, list(problems)
        super().__init__(f"HTTP {status}: {message}")


class TsdbError(OpenAnomalyError):
    """A read from the TSDB failed; `reason` says why in the server's or the network's words."""

    def __init__(self, url: str, reason: str) -> None:
        self.url, self.reason = url, reason
        super().__init__(f"TSDB at {url}: {reason}")


class TsdbUnavailable(TsdbError):
    """The TSDB did not answer (connection refused, timeout, 5xx)."""


class TsdbQueryRefused(TsdbError):
    """The TSDB answered but refused the query (bad PromQL, too many series)."""


class InvalidLabelFilter(OpenAnomalyError):
    """The label filter typed in the UI is not a list of PromQL label matchers."""


class InvalidModelSection(OpenAnomalyError):
    """The model section given for a comparison, or the pipeline it goes into, cannot be used."""

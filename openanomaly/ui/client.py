"""`ApiClient`: the daemon's HTTP API (docs/api.md), one method per endpoint.

The UI reaches the daemon through nothing else. Answers are the API's JSON as plain dicts;
failures come out as `DaemonUnreachable` (nothing answered) or `ApiError` (an HTTP error, with
the located problems of a 422).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from openanomaly import __version__
from openanomaly.errors import Problem
from openanomaly.ui.errors import ApiError, DaemonUnreachable

# Reads are quick; validating or queueing a backtest only parses YAML. A daemon that takes
# longer is stuck, and the page should say so rather than spin.
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=3.0)
Json = dict[str, Any]


class ApiClient:
    def __init__(self, base_url: str, token: str | None, http: httpx.Client | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token or None
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)

    @property
    def can_write(self) -> bool:
        """Whether this client holds a token, without which the daemon refuses every change."""
        return self.token is not None

    # --- reads ----------------------------------------------------------------------------

    def info(self) -> Json:
        """`{"version", "leading", "writes_enabled", "pipelines_dir"}`."""
        return self._call("GET", "/api/v1/info")

    def pipelines(self) -> Json:
        """`{"pipelines": [State, ...], "problems": [Problem, ...]}`."""
        return self._call("GET", "/api/v1/pipelines")

    def pipeline(self, name: str) -> Json:
        return self._call("GET", f"/api/v1/pipelines/{_segment(name)}")

    def models(self, pipeline: str | None = None) -> list[Json]:
        params = {"pipeline": pipeline} if pipeline else {}
        models: list[Json] = self._call("GET", "/api/v1/models", params=params)["models"]
        return models

    def runs(
        self,
        pipeline: str | None = None,
        *,
        kind: str | None = None,
        failed: bool = False,
        limit: int = 100,
    ) -> list[Json]:
        """Newest first; `kind` (train|infer) and `failed` (failed or interrupted) are
        filtered by the daemon."""
        params: dict[str, Any] = {"failed": str(failed).lower(), "limit": limit}
        if pipeline:
            params["pipeline"] = pipeline
        if kind:
            params["kind"] = kind
        runs: list[Json] = self._call("GET", "/api/v1/runs", params=params)["runs"]
        return runs

    # --- changes (need the token) ---------------------------------------------------------

    def trigger(self, name: str, kind: str) -> Json:
        """Schedule a train or infer run now; `kind` is "train" or "infer"."""
        if kind not in ("train", "infer"):
            raise ValueError(f"kind must be train or infer, got {kind!r}")
        return self._call("POST", f"/api/v1/pipelines/{_segment(name)}/{kind}")

    def save_pipeline(self, name: str, yaml_text: str, *, overwrite: bool = False) -> Json:
        body = {"yaml": yaml_text, "overwrite": overwrite}
        return self._call("PUT", f"/api/v1/pipelines/{_segment(name)}", json=body)

    # --- playground -----------------------------------------------------------------------

    def validate(self, yaml_text: str, filename: str = "playground.yaml") -> Json:
        """`{"pipelines": [name, ...], "problems": [Problem, ...]}`."""
        return self._call(
            "POST", "/api/v1/validate", json={"yaml": yaml_text, "filename": filename}
        )

    def start_backtest(
        self, yaml_text: str, start: str, end: str, pipeline: str | None = None
    ) -> Json:
        body = {"yaml": yaml_text, "pipeline": pipeline, "start": start, "end": end}
        return self._call("POST", "/api/v1/backtests", json=body)

    def backtest(self, backtest_id: str) -> Json:
        return self._call("GET", f"/api/v1/backtests/{_segment(backtest_id)}")

    def backtest_series(self, backtest_id: str, series_id: str) -> Json:
        path = f"/api/v1/backtests/{_segment(backtest_id)}/series"
        return self._call("GET", path, params={"id": series_id})

    def cancel_backtest(self, backtest_id: str) -> Json:
        return self._call("DELETE", f"/api/v1/backtests/{_segment(backtest_id)}")

    # --- transport ------------------------------------------------------------------------

    def _call(self, method: str, path: str, **kwargs: Any) -> Json:
        headers = {"User-Agent": f"openanomaly-ui/{__version__}", "Accept": "application/json"}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            response = self._http.request(method, self.base_url + path, headers=headers, **kwargs)
        except httpx.TransportError as exc:  # connect, read, timeouts, protocol errors
            raise DaemonUnreachable(self.base_url, _reason(exc)) from None
        if response.status_code >= 400:
            raise _api_error(response)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            # Something answered, but not the daemon (another service on that port?).
            raise ApiError(
                response.status_code, f"the answer is not a JSON object: {response.text[:200]!r}"
            )
        return answer


def _segment(value: str) -> str:
    """One path segment: a name or id can never reach another endpoint."""
    return quote(value, safe="")


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer in time ({type(exc).__name__})"
    text = str(exc).strip()
    return text or type(exc).__name__


def _api_error(response: httpx.Response) -> ApiError:
    """`{"detail": "..."}`, `{"detail": {"problems": [...]}}`, or FastAPI's own validation
    errors (`{"detail": [{"loc", "msg"}, ...]}`) as one ApiError."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        text = response.text.strip()[:300] or response.reason_phrase
        return ApiError(response.status_code, text)
    if isinstance(detail, dict) and isinstance(detail.get("problems"), list):
        problems = [problem_from_json(p) for p in detail["problems"] if isinstance(p, dict)]
        message = "; ".join(str(p) for p in problems) or "invalid input"
        return ApiError(response.status_code, message, problems)
    if isinstance(detail, list):  # request validation by FastAPI itself
        parts = [
            f"{'.'.join(str(x) for x in item.get('loc', []))}: {item.get('msg', '')}"
            for item in detail
            if isinstance(item, dict)
        ]
        return ApiError(response.status_code, "; ".join(parts) or "invalid request")
    return ApiError(response.status_code, str(detail) if detail else response.reason_phrase)


def problem_from_json(data: dict[str, Any]) -> Problem:
    """A `Problem` of the API (`file`, `line`, `field`, `reason`) as ours."""
    line = data.get("line")
    return Problem(
        str(data.get("file", "")),
        line if isinstance(line, int) else 0,
        str(data.get("field", "") or ""),
        str(data.get("reason", "")),
    )

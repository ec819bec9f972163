"""The daemon's HTTP endpoints (FastAPI on the daemon's own asyncio loop); docs/api.md.

Reads are open (bind to 127.0.0.1, the default, or put a proxy in front). With `http.api_token`
set, every POST, PUT and DELETE needs it; without one, the endpoints that change what the daemon
does (train, infer, saving pipeline files) are off and the side-effect-free ones stay open.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import SecretStr

from openanomaly import __version__
from openanomaly.daemon.http_playground import add_playground_routes, problems_json
from openanomaly.ports import ModelRecord, RunRecord

if TYPE_CHECKING:
    from openanomaly.daemon.service import Daemon

TSDB_FRESHNESS = timedelta(minutes=15)  # /readyz: a TSDB answer within this counts as reachable


def create_api(daemon: Daemon) -> FastAPI:
    api = FastAPI(title="OpenAnomaly", version=__version__, docs_url="/docs")
    token = daemon.app.settings.http.api_token
    authorized, may_change = token_guards(token)

    @api.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is alive and its event loop answers."""
        return {"status": "ok"}

    async def readiness() -> list[str]:
        """Scheduler running, registry reachable, TSDB answered recently (or nothing ran yet)."""
        problems = []
        if not daemon.started:
            problems.append("scheduler not running")
        try:
            await asyncio.to_thread(daemon.app.registry.ping)
        except Exception as exc:
            problems.append(f"registry: {exc}")
        last = daemon.last_tsdb_ok
        ran_once = daemon.metrics.runs._metrics  # any finished run at all
        everies = [st.loaded.pipeline.infer.every for st in daemon.pipelines.values()]
        fresh = max([TSDB_FRESHNESS, *(2 * e for e in everies)])
        if ran_once and (last is None or datetime.now(UTC) - last > fresh):
            minutes = fresh.total_seconds() / 60
            problems.append(f"no successful TSDB read or write in the last {minutes:.0f} minutes")
        daemon.metrics.ready.set(0 if problems else 1)
        return problems

    @api.get("/readyz")
    async def readyz(response: Response) -> dict[str, Any]:
        problems = await readiness()
        if problems:
            response.status_code = 503
        return {"ready": not problems, "problems": problems}

    @api.get("/metrics")
    async def metrics() -> Response:
        await readiness()  # openanomaly_ready as of this scrape: alert rules see what /readyz says
        return Response(generate_latest(daemon.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @api.get("/api/v1/info")
    async def info() -> dict[str, Any]:
        return {
            "version": __version__,
            "leading": daemon.leading,
            "writes_enabled": token is not None,
            "pipelines_dir": str(daemon.app.settings.pipelines_dir),
        }

    @api.get("/api/v1/pipelines")
    async def pipelines() -> dict[str, Any]:
        states = await asyncio.to_thread(
            lambda: [daemon.state_of(name) for name in sorted(daemon.pipelines)]
        )
        return {"pipelines": states, "problems": problems_json(daemon.problems)}

    @api.get("/api/v1/pipelines/{name}")
    async def pipeline(name: str) -> dict[str, Any]:
        state = await asyncio.to_thread(daemon.state_of, name)
        if state is None:
            raise HTTPException(404, f"no pipeline named {name!r}")
        return state

    @api.get("/api/v1/models")
    async def models(pipeline: str | None = None) -> dict[str, Any]:
        records = await asyncio.to_thread(daemon.app.registry.models, pipeline)
        return {"models": [model_json(r) for r in records]}

    @api.get("/api/v1/runs")
    async def runs(
        pipeline: str | None = None, failed: bool = False, kind: str | None = None, limit: int = 100
    ) -> dict[str, Any]:
        records = await asyncio.to_thread(
            lambda: daemon.app.registry.runs(
                pipeline, failed_only=failed, kind=kind, limit=min(limit, 1000)
            )
        )
        return {"runs": [run_json(r) for r in records]}

    async def start(name: str, kind: str) -> dict[str, Any]:
        if not daemon.leading:
            raise HTTPException(409, "this scheduler is a standby; ask the one that leads")
        if not daemon.trigger(name, kind):
            raise HTTPException(404, f"no pipeline named {name!r}")
        return {"pipeline": name, "kind": kind, "status": "scheduled"}

    @api.post("/api/v1/pipelines/{name}/train", status_code=202, dependencies=[Depends(may_change)])
    async def post_train(name: str) -> dict[str, Any]:
        return await start(name, "train")

    @api.post("/api/v1/pipelines/{name}/infer", status_code=202, dependencies=[Depends(may_change)])
    async def post_infer(name: str) -> dict[str, Any]:
        return await start(name, "infer")

    add_playground_routes(api, daemon, checked=Depends(authorized), changes=Depends(may_change))
    return api


def token_guards(token: SecretStr | None) -> tuple[Callable[..., bool], Callable[..., None]]:
    """FastAPI dependencies: `authorized` checks the bearer token when one is set (True: the
    caller may change things; False: no token is set at all); `may_change` refuses without one."""

    def authorized(authorization: str | None = Header(default=None)) -> bool:
        if token is None:
            return False
        expected = f"Bearer {token.get_secret_value()}"
        given = (authorization or "").encode("utf-8", "surrogateescape")
        if not authorization or not hmac.compare_digest(given, expected.encode()):
            raise HTTPException(401, "missing or wrong bearer token")
        return True

    def may_change(allowed: bool = Depends(authorized)) -> None:
        if not allowed:
            raise HTTPException(403, "set http.api_token to enable this endpoint")

    return authorized, may_change


def model_json(record: ModelRecord) -> dict[str, Any]:
    data = asdict(record)
    data["artifact"] = asdict(record.artifact)
    return _iso(data)


def run_json(record: RunRecord) -> dict[str, Any]:
    return _iso(asdict(record))


def _iso(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in data.items()}

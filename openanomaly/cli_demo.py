"""`openanomaly demo`: see OpenAnomaly find incidents in minutes, with nothing to configure."""

from __future__ import annotations

import signal
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from openanomaly.cli import app


@app.command()
def demo(
    tsdb_url: Annotated[
        str | None,
        typer.Option(
            "--tsdb-url",
            help="Use this running TSDB instead of starting one: it needs remote write on and "
            "must accept days-old samples (Prometheus: out_of_order_time_window); the demo_* "
            "series it writes stay there.",
        ),
    ] = None,
    days: Annotated[int, typer.Option("--days", min=5, max=30, help="Days of history.")] = 5,
    live: Annotated[
        str, typer.Option("--live", help="How long to score live afterwards (0s: skip).")
    ] = "60s",
    out: Annotated[Path, typer.Option("--out", help="Where the plot goes.")] = Path(
        "openanomaly-demo"
    ),
    at: Annotated[
        str | None, typer.Option("--at", hidden=True, help="Pretend now is this (tests).")
    ] = None,
) -> None:
    """Start a TSDB (or use --tsdb-url), seed days of synthetic metrics with injected
    incidents, backtest the demo pipelines, score live for a while, and print what was
    found next to what was injected; writes an HTML plot."""
    from openanomaly.demo.run import bad_duration, run_demo, table
    from openanomaly.durations import parse_duration

    try:
        live_for = parse_duration(live)
    except ValueError:
        raise bad_duration(live) from None

    def echo(line: str) -> None:
        typer.echo(line, err=True)

    def stop(signum: int, _frame: object) -> None:
        # The TSDB we started runs in its own session (so a Ctrl-C in the terminal reaches
        # us first): on SIGTERM or SIGHUP, unwind so it is stopped and its temp dir removed.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, stop)
    now = datetime.fromisoformat(at) if at else None
    report = run_demo(tsdb_url=tsdb_url, days=days, live=live_for, out=out, echo=echo, now=now)
    typer.echo("")
    typer.echo(table(report))
    typer.echo("")
    typer.echo(
        f"found {report.found} of {len(report.findings)} injected incidents; "
        f"{report.other_flagged} other alarm(s), points over 1, "
        f"in {len(report.scored)} scored points"
    )
    if report.plot is not None:
        typer.echo(f"plot: {report.plot} (open it in a browser)")
    if report.live_runs and tsdb_url is not None:
        typer.echo(
            "live: the demo pipelines were trained and scored as the daemon does; their "
            "forecasts, bands and scores (demo_http_anomaly_*, demo_cpu_anomaly_*) are in the TSDB"
        )

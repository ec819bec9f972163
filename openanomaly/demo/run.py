"""The demo: a TSDB (ours or yours), days of synthetic metrics with known incidents, a backtest
of the demo pipelines over them, a short live run writing results back, and a report of what
was found next to what was injected.

It uses the product's own paths end to end: remote write to seed, the query API to read, the
engines, backtest, train and infer use cases, and remote write for the results.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.resources import files
from pathlib import Path

import pandas as pd

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.adapters.model_engine.catalogs import model_catalog
from openanomaly.adapters.model_engine.factory import model_engine
from openanomaly.bootstrap import build
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.pipeline_loader import parse_pipeline_text
from openanomaly.config.settings import Settings
from openanomaly.demo.synthetic import Incident, generate, incidents_for
from openanomaly.domain.labels import output_labels
from openanomaly.errors import ConfigError, OpenAnomalyError, Problem
from openanomaly.local_tsdb import LocalPrometheus, LocalTSDB, LocalVictoriaMetrics
from openanomaly.ports import OutputSeries
from openanomaly.usecases.backtest import backtest
from openanomaly.usecases.common import ModelCache
from openanomaly.usecases.context_cache import ContextCache
from openanomaly.usecases.infer import infer
from openanomaly.usecases.train import train

Echo = Callable[[str], None]
SLACK = timedelta(minutes=15)  # a 5m rate and a 5m step smear an incident's edges


class NoTSDB(OpenAnomalyError):
    """Neither a TSDB URL nor a TSDB binary to start."""


@dataclass
class Finding:
    incident: Incident
    uid: str | None
    found: bool
    first: datetime | None
    peak: float


@dataclass
class DemoReport:
    findings: list[Finding]
    scored: pd.DataFrame
    other_flagged: int  # points over 1 (alarm onsets) outside every injected incident
    live_runs: list[str] = field(default_factory=list)
    plot: Path | None = None

    @property
    def found(self) -> int:
        return sum(f.found for f in self.findings)


def demo_pipelines() -> list[Pipeline]:
    text = files("openanomaly.demo").joinpath("pipelines.yaml").read_text()
    loaded, problems = parse_pipeline_text(text, "openanomaly/demo/pipelines.yaml", model_catalog)
    if problems:
        raise ConfigError(problems)
    return [item.pipeline for item in loaded]


@contextlib.contextmanager
def tsdb_for_demo(url: str | None, workdir: Path, echo: Echo) -> Iterator[str]:
    """`url` as given, or a VictoriaMetrics (else Prometheus) started here and stopped after."""
    if url is not None:
        yield url.rstrip("/")
        return
    kinds: list[type[LocalTSDB]] = [LocalVictoriaMetrics, LocalPrometheus]
    for kind in kinds:
        if shutil.which(kind.binary_name) is not None:
            tsdb = kind(workdir / kind.binary_name)
            echo(f"starting {kind.binary_name} in {tsdb.workdir} (port {tsdb.port})")
            with tsdb.start():
                yield tsdb.url
            return
    raise NoTSDB(
        "the demo needs a Prometheus-compatible TSDB and found none: install VictoriaMetrics "
        "(Debian/Ubuntu: apt-get install victoria-metrics) or Prometheus (apt-get install "
        "prometheus) so its binary is on PATH, or point the demo at a running one with "
        "--tsdb-url http://HOST:8428 (it needs remote write enabled)"
    )


def seed(url: str, start: datetime, end: datetime, outbox: Path) -> list[Incident]:
    incidents = incidents_for(start, end)
    series = [
        OutputSeries(output_labels(s.name, s.labels, {}), s.timestamps_ms, s.values)
        for s in generate(start, end, incidents)
    ]
    from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings

    writer = RemoteWriteWriter(
        TSDBSettings(url=url), RemoteWriteSettings(max_samples_per_request=50_000), outbox
    )
    try:
        result = writer.write(series)
    finally:
        writer.close(5)
    if result.dropped or result.queued:
        errors = "; ".join(dict.fromkeys(result.errors[:3]))
        hint = "is remote write enabled?"
        if "out of bounds" in errors or "too old" in errors:
            hint = (
                "it refuses samples days old: Prometheus needs "
                "storage.tsdb.out_of_order_time_window (e.g. 30d), or use a fresh TSDB"
            )
        raise OpenAnomalyError(
            f"the TSDB at {url} did not take the demo data ({result.dropped} refused, "
            f"{result.queued} queued): {hint} ({errors})"
        )
    return incidents


def run_demo(
    *,
    tsdb_url: str | None,
    days: int,
    live: timedelta,
    out: Path,
    echo: Echo,
    now: datetime | None = None,
) -> DemoReport:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="openanomaly-demo-") as tmp:
        work = Path(tmp)
        with tsdb_for_demo(tsdb_url, work, echo) as url:
            end = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
            start = end - timedelta(days=days)
            incidents = seed(url, start, end + live + timedelta(minutes=5), work / "outbox")
            _flush(url)
            echo(f"seeded {days} days of demo_http_requests_total and demo_node_cpu_busy")
            pipelines = demo_pipelines()
            scored = _backtest_all(pipelines, url, start, end, echo)
            report = _report(incidents, scored)
            report.plot = out / "demo.html"
            from openanomaly.report.plot import plot

            plot(scored, report.plot, "OpenAnomaly demo: backtest of the demo pipelines")
            report.live_runs = _live(pipelines, url, work / "data", live, echo)
    return report


def _flush(url: str) -> None:
    """VictoriaMetrics makes fresh samples searchable on its own schedule; ask it now."""
    from openanomaly.local_tsdb import http_get

    with contextlib.suppress(OSError):
        http_get(url + "/internal/force_flush", timeout=10)


def _backtest_all(
    pipelines: list[Pipeline], url: str, start: datetime, end: datetime, echo: Echo
) -> pd.DataFrame:
    settings = Settings.model_validate({"tsdb": {"url": url}})
    reader = PrometheusReader(settings.tsdb)
    parts = []
    try:
        for pipeline in pipelines:
            begin = start + pipeline.train.window
            t0 = time.perf_counter()
            result = backtest(pipeline, reader, model_engine(pipeline.model.engine), begin, end)
            scored = result.scored
            flagged = int((scored["score"] > 1).sum()) if len(scored) else 0
            echo(
                f"backtest {pipeline.name}: {scored['unique_id'].nunique() if len(scored) else 0}"
                f" series, {len(scored)} points, {result.fits} fits, {flagged} over 1 "
                f"({time.perf_counter() - t0:.0f}s)"
            )
            parts.append(scored.assign(pipeline=pipeline.name))
    finally:
        reader.close()
    return pd.concat(parts, ignore_index=True)


def _report(incidents: list[Incident], scored: pd.DataFrame) -> DemoReport:
    """An incident is found when a point in it scores 1 or more, as the alert rule has it
    (within a hold-off, the points still anomalous after one over 1 score exactly 1). Other
    alarms are the points over 1 elsewhere: the hold-off makes each a new onset."""
    flagged = scored[scored["score"] >= 1]
    onsets = scored["score"] > 1
    explained = pd.Series(False, index=scored.index)
    findings = []
    for incident in incidents:
        key = f'{"service" if incident.family == "http" else "instance"}="{incident.series}"'
        uids = [u for u in scored["unique_id"].unique() if key in u]
        uid = uids[0] if uids else None
        during = (
            (scored["unique_id"] == uid)
            & (scored["ds"] >= pd.Timestamp(incident.start))
            & (scored["ds"] <= pd.Timestamp(incident.end + SLACK))
        )
        explained |= during
        hits = flagged[during[flagged.index]]
        first = hits["ds"].min().to_pydatetime() if len(hits) else None
        peak = float(hits["score"].max()) if len(hits) else 0.0
        findings.append(Finding(incident, uid, bool(len(hits)), first, peak))
    return DemoReport(findings, scored, int((onsets & ~explained).sum()))


def _live(
    pipelines: list[Pipeline], url: str, data_dir: Path, live: timedelta, echo: Echo
) -> list[str]:
    """Train and infer as the daemon does, writing forecasts, bands and scores to the TSDB."""
    if live <= timedelta(0):
        return []
    settings = Settings.model_validate(
        {"tsdb": {"url": url, "query_delay": "30s"}, "storage": {"data_dir": str(data_dir)}}
    )
    app = build(settings)
    lines: list[str] = []
    try:
        models, contexts = ModelCache(), ContextCache()
        for pipeline in pipelines:
            run = train(pipeline, app.ports())
            lines.append(f"train {pipeline.name}: {run.status} {run.error or ''}".rstrip())
        deadline = time.monotonic() + live.total_seconds()
        while True:
            for pipeline in pipelines:
                outcome = infer(pipeline, app.ports(), models, contexts=contexts)
                run = outcome.run
                lines.append(
                    f"infer {pipeline.name}: {run.status}, {run.series_scored} series, "
                    f"{run.samples_written} samples written {run.error or ''}".rstrip()
                )
                echo(lines[-1])
            if time.monotonic() + 20 > deadline:
                break
            time.sleep(20)
    finally:
        app.close(10)
    return lines


def table(report: DemoReport) -> str:
    rows = [("injected incident", "series", "at (UTC)", "found", "first flagged", "peak")]
    for f in report.findings:
        rows.append(
            (
                f.incident.kind,
                f.incident.series,
                f"{f.incident.start:%a %H:%M}-{f.incident.end:%H:%M}",
                "yes" if f.found else "NO",
                f"{f.first:%H:%M}" if f.first else "-",
                f"{f.peak:.1f}" if f.found else "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def bad_duration(value: str) -> ConfigError:
    return ConfigError([Problem("--live", 0, "", f"not a duration: {value!r} (e.g. 60s, 2m)")])

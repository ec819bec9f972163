"""The daemon's own metrics, on a CollectorRegistry it owns (no global registry: two daemons
in one test process must not share counters)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from openanomaly import __version__
from openanomaly.ports import RunRecord

_DURATION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "openanomaly_runs", "Finished runs", ["pipeline", "kind", "status"], registry=r
        )
        self.run_seconds = Histogram(
            "openanomaly_run_duration_seconds",
            "Run wall time",
            ["pipeline", "kind"],
            buckets=_DURATION_BUCKETS,
            registry=r,
        )
        self.scheduler_lag = Gauge(
            "openanomaly_scheduler_lag_seconds",
            "Start of the last run minus its scheduled time",
            ["pipeline", "kind"],
            registry=r,
        )
        self.series_scored = Gauge(
            "openanomaly_series_scored", "Series scored by the last infer", ["pipeline"], registry=r
        )
        self.series_skipped = Gauge(
            "openanomaly_series_skipped",
            "Series not scored by the last infer (too short, new, failed)",
            ["pipeline"],
            registry=r,
        )
        self.samples_written = Counter(
            "openanomaly_samples_written",
            "Samples accepted by the TSDB or queued in the outbox",
            ["pipeline"],
            registry=r,
        )
        self.last_success = Gauge(
            "openanomaly_last_success_timestamp_seconds",
            "End of the last successful run",
            ["pipeline", "kind"],
            registry=r,
        )
        self.model_created = Gauge(
            "openanomaly_model_created_timestamp_seconds",
            "Creation time of the active model (model age = time() - this)",
            ["pipeline"],
            registry=r,
        )
        self.reloads = Counter(
            "openanomaly_config_reloads", "Pipeline reloads", ["result"], registry=r
        )
        self.reload_success = Gauge(
            "openanomaly_config_last_reload_successful",
            "1 when every pipeline file loaded at the last reload",
            registry=r,
        )
        self.pipelines = Gauge("openanomaly_pipelines", "Pipelines running", registry=r)
        self.pipeline_problems = Gauge(
            "openanomaly_pipeline_problems", "Problems in pipeline files", registry=r
        )
        self.ready = Gauge(
            "openanomaly_ready",
            "1 when /readyz would answer 200 (scheduler running, registry reachable, TSDB "
            "answered recently); set at each scrape",
            registry=r,
        )
        self.leader = Gauge(
            "openanomaly_leader",
            "1 while this instance schedules (always in light mode; the lease holder in cluster "
            "mode)",
            registry=r,
        )
        self.dispatcher_up = Gauge(
            "openanomaly_dispatcher_up",
            "0 when the last hand-over of jobs failed (cluster mode: broker unreachable)",
            registry=r,
        )
        self.dispatcher_up.set(1)
        self.dispatch_errors = Counter(
            "openanomaly_dispatch_errors",
            "Runs whose jobs could not be handed to the dispatcher",
            registry=r,
        )
        Info("openanomaly_build", "Build information", registry=r).info({"version": __version__})

    def outbox(self, batches: Callable[[], float], size: Callable[[], float]) -> None:
        Gauge(
            "openanomaly_outbox_batches",
            "Write batches waiting in the outbox",
            registry=self.registry,
        ).set_function(batches)
        Gauge(
            "openanomaly_outbox_bytes", "Bytes waiting in the outbox", registry=self.registry
        ).set_function(size)

    def record(self, run: RunRecord) -> None:
        self.runs.labels(run.pipeline, run.kind, run.status).inc()
        self.scheduler_lag.labels(run.pipeline, run.kind).set(
            max(0.0, (run.started - run.scheduled).total_seconds())
        )
        if run.finished is not None:
            seconds = (run.finished - run.started).total_seconds()
            self.run_seconds.labels(run.pipeline, run.kind).observe(seconds)
            if run.status == "ok":
                self.last_success.labels(run.pipeline, run.kind).set(run.finished.timestamp())
        if run.kind == "infer" and run.status == "ok":
            self.series_scored.labels(run.pipeline).set(run.series_scored)
            self.series_skipped.labels(run.pipeline).set(run.series_skipped)
            self.samples_written.labels(run.pipeline).inc(run.samples_written)

    def forget(self, pipeline: str) -> None:
        for metric in (self.series_scored, self.series_skipped, self.model_created):
            with contextlib.suppress(KeyError):  # never set for this pipeline
                metric.remove(pipeline)

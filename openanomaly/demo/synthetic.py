"""Synthetic metrics for the demo: realistic shapes with incidents whose times we know.

Two families, as an SRE would scrape them:
- `demo_http_requests_total{service, code}`: counters whose per-second rate has a daily cycle
  (quiet nights, busy afternoons), a weekly dip at the weekend, a slow trend and noise;
- `demo_node_cpu_busy{instance}`: a gauge (busy fraction of cores) with a daily cycle and noise.

Incidents are injected into the rate or the gauge before counters are accumulated, so the
demo's queries (`rate(...[5m])`) see them as an operator would. Pure: no I/O, seeded RNG.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

SCRAPE = timedelta(seconds=60)
SERVICES = {"checkout": 120.0, "search": 300.0, "login": 60.0}  # requests/s at the daily mean
INSTANCES = ("node-1", "node-2", "node-3")


@dataclass(frozen=True)
class Incident:
    family: str  # "http" or "cpu"
    series: str  # the service or instance it hits
    kind: str  # what happened, for the table
    start: datetime
    end: datetime
    factor: float  # multiplier of the normal value (http) or added busy fraction (cpu)


@dataclass(frozen=True)
class Series:
    name: str
    labels: dict[str, str]
    timestamps_ms: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def incidents_for(start: datetime, end: datetime) -> list[Incident]:
    """Four incidents in the last 40% of the history (the part the demo backtests)."""
    span = end - start

    def at(fraction: float) -> datetime:
        # On the 5-minute grid the demo pipelines score at, so every run looks alike.
        moment = start + span * fraction
        return moment.replace(minute=moment.minute - moment.minute % 5, second=0, microsecond=0)

    plan = [  # family, series, what, when (fraction of the history), minutes, factor
        ("http", "checkout", "outage: traffic drops to 10%", 0.66, 40, 0.1),
        ("http", "search", "surge: traffic x2.5", 0.78, 30, 2.5),
        ("cpu", "node-2", "runaway process: CPU +45 points", 0.86, 45, 0.45),
        ("http", "login", "spike: traffic x4", 0.93, 15, 4.0),
    ]
    return [
        Incident(family, series, kind, at(when), at(when) + timedelta(minutes=minutes), factor)
        for family, series, kind, when, minutes, factor in plan
    ]


def _shape(
    t_s: npt.NDArray[np.float64], rng: np.random.Generator, noise: float
) -> npt.NDArray[np.float64]:
    day = 86_400.0
    hour = (t_s % day) / 3600.0
    daily = 1 + 0.45 * np.sin(2 * np.pi * (hour - 9) / 24)  # peak mid-afternoon, low at night
    weekly = 1 - 0.08 * np.cos(2 * np.pi * t_s / (7 * day))  # a slow weekly swell
    trend = 1 + 0.02 * (t_s - t_s[0]) / day  # +2% a day
    wobble = 1 + rng.normal(0, noise, len(t_s))
    return np.asarray(daily * weekly * trend * wobble, dtype=np.float64)


def generate(
    start: datetime, end: datetime, incidents: list[Incident], seed: int = 7
) -> list[Series]:
    """Every demo series from `start` to `end`, one sample per SCRAPE."""
    rng = np.random.default_rng(seed)
    step_s = SCRAPE.total_seconds()
    n = int((end - start) / SCRAPE) + 1
    t_s = start.timestamp() + np.arange(n, dtype=np.float64) * step_s
    ts_ms = (t_s * 1000).astype(np.int64)
    out: list[Series] = []
    for service, mean in SERVICES.items():
        rate = mean * _shape(t_s, rng, 0.03)
        for incident in incidents:
            if incident.family == "http" and incident.series == service:
                rate = np.where(_during(t_s, incident), rate * incident.factor, rate)
        for code, share in (("200", 0.99), ("500", 0.01)):
            counter = np.cumsum(rate * share * step_s)
            out.append(
                Series(
                    "demo_http_requests_total",
                    {"service": service, "code": code, "job": "demo"},
                    ts_ms,
                    np.round(counter),
                )
            )
    for k, instance in enumerate(INSTANCES):
        busy = (0.25 + 0.05 * k) * _shape(t_s, rng, 0.04)
        for incident in incidents:
            if incident.family == "cpu" and incident.series == instance:
                busy = np.where(_during(t_s, incident), busy + incident.factor, busy)
        out.append(
            Series(
                "demo_node_cpu_busy",
                {"instance": instance, "job": "demo"},
                ts_ms,
                np.clip(busy, 0.0, 1.0),
            )
        )
    return out


def _during(t_s: npt.NDArray[np.float64], incident: Incident) -> npt.NDArray[np.bool_]:
    return (t_s >= incident.start.timestamp()) & (t_s < incident.end.timestamp())

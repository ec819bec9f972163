"""Cluster mode: one sharded infer cycle on 1 vs 2 `openanomaly worker` processes, and the
per-task overhead of the Celery path against the in-process thread pool.

Starts a private VictoriaMetrics, Redis (broker and result backend) and PostgreSQL (registry)
in a temporary directory, seeds N series at step 1m over `--history` through our remote-write
writer, registers one model for all N series, and then:

1. runs infer cycles (every shard of one window; `infer.max_catchup` 30m, so each cycle
   scores 30 points per series) on one worker process and on two, interleaved: worker 1
   warms up alone (model load, full context read), then per pair a timed cycle on worker 1
   alone and, after a fresh worker 2 has warmed up, a timed cycle on both. Every cycle's
   `now` is a step after the previous one, as the scheduler's would be, so each worker
   does an incremental read per cycle, as in production. Interleaving makes drift (the
   TSDB merging what the cycles wrote, other load on the host) fall on both alike.
   Reported: median wall time from the first publish to the last result, series x points
   per second, and the 2 / 1 throughput ratio (goal >= 1.7 on 2 cores), with the machine's
   own 2 / 1 ratio for a pure-Python loop in 2 processes as the baseline. The same cycles
   run in light mode (ThreadPoolDispatcher(1) and (2) on a JobRunner in this process) as
   references.
2. one shard (`--shard-series` series), submitted again and again to one warm worker through
   CeleryDispatcher (publish -> worker runs -> result polled) against the same job on a
   ThreadPoolDispatcher with a warm JobRunner here; and an almost empty job (a one-series
   pipeline, a one-point window) to isolate the fixed round-trip cost of the Celery path.
   CeleryDispatcher polls for results every 10 ms for a job's first two seconds, then every
   100 ms, so a longer job's round trip is quantised to 0.1 s (~0.05 s on average).

Workers run with `--pool solo` (dispatcher.workers: 1): one process runs one job at a time,
so "2 workers" is 2 processes. Everything (the workers, VictoriaMetrics, Redis, PostgreSQL
and this process) shares the machine's cores; the CPU seconds of each are reported per
configuration so the ratio can be read against where the time went.

Model: AutoETS (season 12), as `infer_cycle.py`. MSTL is the product default but takes
seconds per series to fit; AutoETS scores through the same path (the statsforecast engine's
`forward`: one filter pass over each context window per series, a Python loop over series)
and takes ~0.5 s per series to fit here. Its scoring is probably cheaper per point than
MSTL's (not measured here), so the model's share of a cycle is, if anything, understated.
`--fit-series` distinct series are fitted and their fitted state
(parameters, sigma, band half-width, training range, origin) is reused for the others
(`forward` costs the same whatever parameters it runs with); the model is stored through the
app's artifact store and registry, so workers load it as they would a trained one, and
`series_count` = N, so `plan_infer` makes ceil(N / shard_series) shards. `scoring.holdoff`
is 0s (the default 8h, capped at the context, would double the context read and rescore the
series over 1; `--holdoff` sets it).

    uv run --no-sync python benchmarks/cluster.py --series 2000 --cycles 2   # quick
    uv run --no-sync python benchmarks/cluster.py                            # 10,000 series
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.services / tests.cluster_harness
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mib

from openanomaly.adapters.job_dispatcher.celery import CeleryDispatcher
from openanomaly.adapters.job_dispatcher.threads import ThreadPoolDispatcher
from openanomaly.adapters.model_engine.statsforecast import StatsForecastEngine
from openanomaly.bootstrap import App, build
from openanomaly.config.pipeline import Pipeline
from openanomaly.config.settings_loader import load_settings
from openanomaly.domain.jobs import Job, JobResult
from openanomaly.domain.labels import output_labels
from openanomaly.domain.series import series_id
from openanomaly.local_tsdb import LocalVictoriaMetrics
from openanomaly.ports import ModelRecord, OutputSeries
from openanomaly.usecases.jobs import JobRunner, plan_infer
from tests.cluster_harness import Worker, cluster_settings
from tests.services import LocalPostgres, LocalRedis

STEP = timedelta(minutes=1)
METRIC = "bench_load"
SHARD_LINE = re.compile(
    r"shard (\d+)/(\d+): scored (\d+) series at (\d+) point\(s\), (\d+) samples written \((.*)\)"
)
PHASES = ("read", "prepare", "model", "score", "write")
SUCCEEDED = re.compile(r"openanomaly\.run_job\[[^\]]+\] succeeded in ([0-9.]+)s")


def pipeline_of(name: str, query: str, args: argparse.Namespace, catchup: str) -> Pipeline:
    return Pipeline.model_validate(
        {
            "name": name,
            "query": query,
            "step": "1m",
            "model": {"name": "AutoETS", "params": {"season_length": 12}},
            "infer": {"every": "1m", "context": args.context, "max_catchup": catchup},
            "scoring": {"holdoff": args.holdoff},
            "limits": {"max_series": max(args.series, 1)},
        }
    )


def host(i: int) -> str:
    return f"host-{i:05d}"


def values(i: int, n: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n)
    return np.round(100 + i % 50 + 10 * np.sin(2 * np.pi * t / 60) + rng.normal(0, 1, n), 3)


# --- processes: CPU seconds and peak RSS from /proc ------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def cpu_seconds(pid: int, *, descendants: bool = False) -> float:
    """utime + stime of `pid` (and of its live descendants: PostgreSQL's backends)."""
    pids = [pid]
    if descendants:
        tree, stack = _children(), [pid]
        while stack:
            for child in tree.get(stack.pop(), []):
                pids.append(child)
                stack.append(child)
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = Path(f"/proc/{p}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def status_mib(pid: int, key: str) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def machine_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far (all CPUs, /proc/stat): busy is
    everything but idle, iowait and steal."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    ticks = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / ticks, steal / ticks


@dataclass
class CpuMeter:
    """CPU seconds of the processes taking part (and stolen), between `start` and `stop`,
    summed over every interval measured."""

    procs: dict[str, tuple[int, bool]]  # name -> (pid, with descendants)
    before: dict[str, float] = field(default_factory=dict)
    totals: dict[str, float] = field(default_factory=dict)

    def start(self, procs: dict[str, tuple[int, bool]] | None = None) -> None:
        if procs is not None:
            self.procs = procs
        self.before = self._now()

    def _now(self) -> dict[str, float]:
        now = {n: cpu_seconds(p, descendants=d) for n, (p, d) in self.procs.items()}
        now["(machine)"], now["(stolen)"] = machine_seconds()
        return now

    def stop(self) -> dict[str, float]:
        after = self._now()
        delta = {n: v - self.before.get(n, 0.0) for n, v in after.items()}
        # Busy time of the machine not spent in the processes above: other load on the host
        # (another user's tests), which the comparison cannot account for.
        ours = sum(v for n, v in delta.items() if not n.startswith("("))
        delta["(others)"] = max(0.0, delta.pop("(machine)") - ours)
        for name, value in delta.items():
            self.totals[name] = self.totals.get(name, 0.0) + value
        return self.totals


def machine_scaling(seconds: float = 1.5) -> float:
    """Throughput of 2 processes running a pure-Python loop at once, over 1 alone: what this
    machine's 2 cores give to CPU-bound processes (best of 3 each)."""
    code = (
        "import time,sys\nt=time.perf_counter()\nn=int(sys.argv[1])\nx=0\n"
        "for i in range(n): x+=i*i\nprint(time.perf_counter()-t)"
    )
    n = 2_000_000
    probe = float(
        subprocess.run(
            [sys.executable, "-c", code, str(n)], capture_output=True, text=True, check=True
        ).stdout
    )
    n = int(n * seconds / probe)

    def once(count: int) -> float:
        started = time.perf_counter()
        procs = [
            subprocess.Popen([sys.executable, "-c", code, str(n)], stdout=subprocess.DEVNULL)
            for _ in range(count)
        ]
        for proc in procs:
            proc.wait()
        return time.perf_counter() - started

    one = min(once(1) for _ in range(3))
    two = min(once(2) for _ in range(3))
    return 2 * one / two


# --- setup ---------------------------------------------------------------------------------


def seed(app: App, vm: LocalVictoriaMetrics, series: int, points: int, end: datetime) -> None:
    rng = np.random.default_rng(0)
    stamps = pd.date_range(end=end, periods=points, freq="1min")
    ts_ms = (stamps.asi8 // 1_000_000).astype(np.int64)
    started = time.perf_counter()
    batch: list[OutputSeries] = []
    accepted = 0
    for i in range(series):
        labels = output_labels(METRIC, {"instance": host(i)}, {})
        batch.append(OutputSeries(labels, ts_ms, values(i, points, rng)))
        if len(batch) == 500:
            accepted += app.writer.write(batch).accepted
            batch = []
    if batch:
        accepted += app.writer.write(batch).accepted
    assert accepted == series * points, (accepted, series * points)
    vm.flush()
    print(f"seeded {series:,} x {points} points in {time.perf_counter() - started:.1f} s")


def fit(app: App, pipeline: Pipeline, fit_series: int, history: timedelta, end: datetime) -> Any:
    engine = StatsForecastEngine()
    hosts = "|".join(host(i) for i in range(fit_series))
    frame = app.reader.query_range(f'{METRIC}{{instance=~"{hosts}"}}', end - history, end, STEP)
    started = time.perf_counter()
    fitted = engine.fit(frame, pipeline.model, STEP)
    print(f"fitted {fit_series} series in {time.perf_counter() - started:.1f} s")
    return fitted


def register(
    app: App,
    pipeline: Pipeline,
    fitted: Any,
    *,
    series: int,
    fit_series: int,
    end: datetime,
    history: timedelta,
) -> ModelRecord:
    """A model for series 0..series-1 built from the fitted state of series 0..fit_series-1."""
    engine = StatsForecastEngine()
    per_series = ("models", "sigma", "half", "ranges", "origin", "skipped")
    sources = {n: dict(getattr(fitted, n)) for n in per_series}
    fit_ids = [series_id({"__name__": METRIC, "instance": host(i)}) for i in range(fit_series)]
    missing = [uid for uid in fit_ids if uid not in sources["models"]]
    if missing:
        raise SystemExit(f"fitting failed for {missing[:3]}: {sources['skipped']}")
    copy = type(fitted)(**{**fitted.__dict__, **{n: {} for n in per_series}})
    for i in range(series):
        uid = series_id({"__name__": METRIC, "instance": host(i)})
        source = fit_ids[i % fit_series]
        for name in per_series:
            if source in sources[name]:
                getattr(copy, name)[uid] = sources[name][source]
    key = f"{pipeline.name}/bench-{series}.bin"
    artifact = app.artifacts.put(key, engine.dumps(copy))
    record = app.registry.add_model(
        ModelRecord(
            pipeline.name, 0, pipeline.config_hash(), "statsforecast", artifact,
            end, series, end - history, end, 0.0,
        )
    )  # fmt: skip
    print(
        f"registered {pipeline.name} v{record.version}: {series:,} series, "
        f"artifact {artifact.size / 1e6:.1f} MB ({artifact.size / series:,.0f} bytes per series)"
    )
    return record


# --- running cycles ------------------------------------------------------------------------


@dataclass
class Cycle:
    wall: float
    series: int
    points: int
    samples: int
    phases: dict[str, float]  # summed over the shards (worker seconds, not wall)
    workers: dict[str, int]  # jobs per worker


@dataclass
class Run:
    name: str
    warmup: Cycle
    cycles: list[Cycle]
    cpu: dict[str, float]  # over the timed cycles
    rss: dict[str, float] = field(default_factory=dict)  # worker -> peak RSS MiB

    @property
    def median(self) -> float:
        return statistics.median(c.wall for c in self.cycles)

    def throughput(self) -> float:
        c = self.cycles[0]
        return c.series * c.points / self.median

    def phases(self) -> dict[str, float]:
        return {p: statistics.median(c.phases.get(p, 0.0) for c in self.cycles) for p in PHASES}


class ShardLog:
    """The workers' "shard k/n: scored ..." lines since a mark, phases summed."""

    def __init__(self, sources: Callable[[], Sequence[list[str]]]) -> None:
        self.sources = sources
        self.marks: list[int] = []

    def mark(self) -> None:
        self.marks = [len(lines) for lines in self.sources()]

    def since(self, expected: int, timeout: float = 5.0) -> tuple[dict[str, float], int]:
        deadline = time.monotonic() + timeout
        while True:
            found = []
            for lines, mark in zip(self.sources(), self.marks, strict=False):
                found += [m for line in lines[mark:] if (m := SHARD_LINE.search(line))]
            if len(found) >= expected or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        phases: dict[str, float] = {}
        for match in found:
            for part in match.group(6).split(", "):
                name, _, secs = part.rpartition(" ")
                phases[name] = phases.get(name, 0.0) + float(secs.rstrip("s"))
        return phases, len(found)


class Capture(list[str]):
    """In-process log records of the infer use case, as lines (light mode's shard lines)."""

    def __init__(self) -> None:
        super().__init__()
        import logging

        class Handler(logging.Handler):
            def emit(handler, record: logging.LogRecord) -> None:
                self.append(record.getMessage())

        logger = logging.getLogger("openanomaly.usecases.infer")
        logger.setLevel(logging.INFO)
        logger.addHandler(Handler())
        logger.propagate = False


def run_cycle(
    submit: Callable[[Job], Future[JobResult]], jobs: list[Job], log: ShardLog, timeout: float
) -> Cycle:
    log.mark()
    started = time.perf_counter()
    futures = [submit(job) for job in jobs]
    results = [f.result(timeout) for f in futures]
    wall = time.perf_counter() - started
    bad = [r.error for r in results if r.status != "ok"]
    if bad:
        raise SystemExit(f"{len(bad)} of {len(jobs)} jobs failed: {bad[:3]}")
    phases, seen = log.since(len(jobs))
    if seen < len(jobs):
        print(f"  (only {seen} of {len(jobs)} shard log lines seen)")
    points = points_of(jobs[0])
    workers: dict[str, int] = {}
    for r in results:
        workers[r.worker] = workers.get(r.worker, 0) + 1
    return Cycle(
        wall,
        sum(r.series_scored for r in results),
        points,
        sum(r.samples_written for r in results),
        phases,
        workers,
    )


def plans(
    app: App, pipeline: Pipeline, times: list[datetime], shard_series: int
) -> list[list[Job]]:
    out = []
    for now in times:
        plan = plan_infer(pipeline, app.registry, now, timedelta(0), shard_series=shard_series)
        assert plan is not None, "no model registered"
        assert plan.jobs, "nothing to score"
        out.append(plan.jobs)
    return out


def points_of(job: Job) -> int:
    assert job.first is not None
    assert job.last is not None
    return int((job.last - job.first) / STEP) + 1


def cycles(
    name: str,
    *,
    submit: Callable[[Job], Future[JobResult]],
    planned: list[list[Job]],
    log: ShardLog,
    meter: CpuMeter,
    timeout: float = 600,
) -> Run:
    print(f"\n{name}: {len(planned[0])} shards per cycle")
    print(CYCLE_HEADER)
    warm: Cycle | None = None
    timed: list[Cycle] = []
    for k, jobs in enumerate(planned):
        if k:
            meter.start()
        cycle = run_cycle(submit, jobs, log, timeout)
        if k:
            meter.stop()
        show("warm-up" if k == 0 else str(k), cycle)
        if k == 0:
            warm = cycle
        else:
            timed.append(cycle)
    assert warm is not None
    return Run(name, warm, timed, meter.totals)


CYCLE_HEADER = "  cycle            wall s   series  points   samples   " + "  ".join(
    f"{p:>7}" for p in PHASES
)


def show(label: str, cycle: Cycle) -> None:
    print(
        f"  {label:<15} {cycle.wall:>6.2f}  {cycle.series:>7,}  {cycle.points:>6}  "
        f"{cycle.samples:>9,}   "
        + "  ".join(f"{cycle.phases.get(p, 0.0):>7.2f}" for p in PHASES)
        + f"   jobs per worker {sorted(cycle.workers.values(), reverse=True)}"
    )


# --- per-task overhead ---------------------------------------------------------------------


@dataclass
class Overhead:
    name: str
    celery: list[float]
    worker_runtime: list[float]  # Celery's "succeeded in" on the worker
    threads: list[float]

    def row(self) -> tuple[float, float, float, float, float]:
        c, t = statistics.median(self.celery), statistics.median(self.threads)
        w = statistics.median(self.worker_runtime) if self.worker_runtime else float("nan")
        return c, w, t, c - t, c / t


def repeat_job(
    submit: Callable[[Job], Future[JobResult]], job: Job, times: int, warm: int = 2
) -> list[float]:
    out = []
    for k in range(warm + times):
        started = time.perf_counter()
        result = submit(job).result(600)
        wall = time.perf_counter() - started
        if result.status != "ok":
            raise SystemExit(f"{job.name} failed: {result.error}")
        if k >= warm:
            out.append(wall)
    return out


def celery_repeat(
    dispatcher: CeleryDispatcher, worker: Worker, job: Job, times: int, warm: int = 2
) -> tuple[list[float], list[float]]:
    walls, runtimes = [], []
    for k in range(warm + times):
        before = len(worker.lines)
        started = time.perf_counter()
        result = dispatcher.submit(job).result(600)
        wall = time.perf_counter() - started
        if result.status != "ok":
            raise SystemExit(f"{job.name} failed: {result.error}")
        deadline = time.monotonic() + 3
        runtime = float("nan")
        while time.monotonic() < deadline:
            hits = [m for line in worker.lines[before:] if (m := SUCCEEDED.search(line))]
            if hits:
                runtime = float(hits[-1].group(1))
                break
            time.sleep(0.01)
        if k >= warm:
            walls.append(wall)
            runtimes.append(runtime)
    return walls, runtimes


# --- main ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--shard-series", type=int, default=1_000)
    parser.add_argument("--cycles", type=int, default=3, help="timed cycles after the warm-up")
    parser.add_argument("--fit-series", type=int, default=10)
    parser.add_argument("--context", default="2h", help="infer.context")
    parser.add_argument("--catchup", default="30m", help="infer.max_catchup: points per cycle")
    parser.add_argument("--history", default="6h", help="seeded history")
    parser.add_argument("--holdoff", default="0s", help="scoring.holdoff")
    parser.add_argument("--repeats", type=int, default=10, help="per-task overhead samples")
    parser.add_argument(
        "--same-window",
        action="store_true",
        help="re-run one plan every cycle (contexts come from the cache: no TSDB read)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    work = Path(tempfile.mkdtemp(prefix="oa-bench-cluster-"))
    print(f"work directory {work}; {os.cpu_count()} CPUs")
    started = time.perf_counter()
    try:
        with contextlib.ExitStack() as stack:
            bench(args, stack, work)
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


class Bench:
    """The services, the seeded data, the registered models and the planned cycles."""

    def __init__(self, args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> None:
        binary = shutil.which("victoria-metrics")
        if binary is None:
            raise SystemExit("victoria-metrics is not on PATH (apt-get install victoria-metrics)")
        self.args, self.stack, self.work = args, stack, work
        history = pd.Timedelta(args.history).to_pytimedelta()
        self.vm = stack.enter_context(LocalVictoriaMetrics(work / "vm", binary=binary))
        redis = stack.enter_context(LocalRedis(work / "redis"))
        postgres = stack.enter_context(LocalPostgres(work / "postgres"))
        self.config = cluster_settings(
            work / "openanomaly.yaml",
            tsdb_url=self.vm.url,
            broker_url=redis.url,
            registry_url=postgres.fresh_database("bench"),
            artifacts_dir=work / "artifacts",
            shard_series=args.shard_series,
            infer_timeout="600s",
            train_timeout="600s",
        )
        self.settings = load_settings(self.config).settings
        shown = {k: v for k, v in yaml.safe_load(self.config.read_text()).items() if k != "storage"}
        print("settings: " + yaml.safe_dump(shown, default_flow_style=True, width=200).strip())
        self.app = build(self.settings)
        stack.callback(self.app.close, 5)
        self.services = {
            "victoria-metrics": (self.vm._process.pid, False),  # type: ignore[union-attr]
            "redis": (redis._process.pid, False),  # type: ignore[union-attr]
            "postgres": (postgres._process.pid, True),  # type: ignore[union-attr]
            "bench": (os.getpid(), False),
        }

        self.end = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=2)
        seed(self.app, self.vm, args.series, int(history / STEP) + 1, self.end)
        big = pipeline_of("bench", METRIC, args, args.catchup)
        self.tiny = pipeline_of("bench-tiny", f'{METRIC}{{instance="{host(0)}"}}', args, "1m")
        fitted = fit(self.app, big, args.fit_series, history, self.end)
        for pipeline, series, fitted_from in (
            (big, args.series, args.fit_series),
            (self.tiny, 1, 1),
        ):
            register(
                self.app,
                pipeline,
                fitted,
                series=series,
                fit_series=fitted_from,
                end=self.end,
                history=history,
            )

        self.big = big
        # Light mode: a warm-up and `cycles` timed cycles, the last where the data ends.
        self.planned = plans(self.app, big, self.times(args.cycles + 1), args.shard_series)
        self.shards = len(self.planned[0])
        assert self.shards == math.ceil(args.series / args.shard_series), self.shards
        print(
            f"{args.series:,} series in {self.shards} shards of ~{args.shard_series:,}; "
            f"{points_of(self.planned[0][0])} points per series per cycle; context "
            f"{args.context}; {args.cycles} timed cycles after a warm-up"
        )
        self.dispatcher = CeleryDispatcher(self.settings)
        stack.callback(self.dispatcher.shutdown, 1)
        self.workers: list[Worker] = []
        stack.callback(self._stop_workers)
        self.runner: JobRunner | None = None

    def _stop_workers(self) -> None:
        for w in self.workers:
            w.terminate(10)

    def celery_runs(self) -> tuple[Run, Run]:
        """1 worker process against 2, interleaved so that drift (VictoriaMetrics merging
        the samples written so far, other load on the host) falls on both alike: worker 1
        starts cold and warms up alone; then, per pair, a timed cycle on worker 1 alone,
        worker 2 started fresh and warmed up by an untimed cycle on both, a timed cycle on
        both, worker 2 stopped. (A second worker cannot just be paused: a SIGSTOPped worker
        still takes a message off Redis with its pending BRPOP and sits on it.)"""
        args, submit = self.args, self.dispatcher.submit
        times = iter(self.times(1 + 3 * args.cycles))
        w1 = Worker(self.work, self.config, "w1").start(120)
        self.workers.append(w1)
        log = ShardLog(lambda: [w.lines for w in self.workers])
        print(f"\nCelery, 1 and 2 worker processes, interleaved: {self.shards} shards per cycle")
        print(CYCLE_HEADER)
        cold = run_cycle(submit, self.plan(next(times)), log, 600)
        show("1 w, warm-up", cold)
        one_meter = CpuMeter({})
        two_meter = CpuMeter({})
        solo = {**self.services, "worker 1": (w1.pid, False)}
        ones: list[Cycle] = []
        twos: list[Cycle] = []
        warm2: Cycle | None = None
        for k in range(1, args.cycles + 1):
            one_meter.start(solo)
            ones.append(run_cycle(submit, self.plan(next(times)), log, 600))
            one_meter.stop()
            show(f"1 w, {k}", ones[-1])
            w2 = Worker(self.work, self.config, f"w2-{k}").start(120)
            self.workers.append(w2)
            warm = run_cycle(submit, self.plan(next(times)), log, 600)
            show("2 w, warm-up", warm)
            warm2 = warm2 or warm
            two_meter.start({**solo, "worker 2": (w2.pid, False)})
            twos.append(run_cycle(submit, self.plan(next(times)), log, 600))
            two_meter.stop()
            show(f"2 w, {k}", twos[-1])
            rss2 = status_mib(w2.pid, "VmHWM")
            self.workers.remove(w2)
            w2.terminate(30)
        assert warm2 is not None
        one = Run("Celery, 1 worker process", cold, ones, one_meter.totals)
        two = Run("Celery, 2 worker processes", warm2, twos, two_meter.totals)
        one.rss["worker 1"] = status_mib(w1.pid, "VmHWM")
        two.rss["worker 2 (last)"] = rss2
        return one, two

    def times(self, count: int) -> list[datetime]:
        """`count` cycle times, a step apart, the last where the data ends (or all at the
        end with --same-window)."""
        if self.args.same_window:
            return [self.end] * count
        return [self.end - STEP * (count - 1 - k) for k in range(count)]

    def plan(self, now: datetime) -> list[Job]:
        return plans(self.app, self.big, [now], self.args.shard_series)[0]

    def light_runs(self) -> list[Run]:
        """A JobRunner in this process, on 1 thread and on 2 (each with its own runner, so
        each starts cold like a worker)."""
        captured = Capture()
        runs = []
        for count in (1, 2):
            self.runner = JobRunner(self.app.ports, keep_models=3)
            threads = ThreadPoolDispatcher(count, self.runner.run)
            self.stack.callback(threads.shutdown, 1)
            run = cycles(
                f"light mode, ThreadPoolDispatcher({count}) in-process",
                submit=threads.submit,
                planned=self.planned,
                log=ShardLog(lambda: [captured]),
                meter=CpuMeter(self.services),
            )
            c = self.runner.contexts
            print(
                f"  context cache: {c.full_reads} full, {c.incremental_reads} incremental, "
                f"{c.reused_reads} reused reads for {len(self.planned) * self.shards} shard jobs"
            )
            run.rss["bench process"] = peak_rss_mib()
            runs.append(run)
        return runs

    def overheads(self) -> list[Overhead]:
        """One warm worker (the second one stops), one job, again and again."""
        assert self.runner is not None
        worker, repeats = self.workers[0], self.args.repeats
        shard_job = self.planned[-1][0]
        tiny_plan = plan_infer(self.tiny, self.app.registry, self.end, timedelta(0))
        assert tiny_plan is not None
        assert len(tiny_plan.jobs) == 1
        tiny_job = tiny_plan.jobs[0]
        one_thread = ThreadPoolDispatcher(1, self.runner.run)
        self.stack.callback(one_thread.shutdown, 1)
        out = []
        for name, job in (
            (f"one shard ({shard_job.name})", shard_job),
            ("almost empty (1 series, 1 point)", tiny_job),
        ):
            print(f"\nper-task: {name}, {repeats} runs each after 2 warm ones")
            walls, runtimes = celery_repeat(self.dispatcher, worker, job, repeats)
            local = repeat_job(one_thread.submit, job, repeats)
            out.append(Overhead(name, walls, runtimes, local))
            print(f"  celery round trips  {' '.join(f'{w * 1000:.0f}' for w in walls)} ms")
            print(f"  worker runtime      {' '.join(f'{w * 1000:.0f}' for w in runtimes)} ms")
            print(f"  thread pool         {' '.join(f'{w * 1000:.0f}' for w in local)} ms")
        return out


def bench(args: argparse.Namespace, stack: contextlib.ExitStack, work: Path) -> float:
    scaling = machine_scaling()
    print(f"machine: 2 processes of a pure-Python loop vs 1: throughput ratio {scaling:.2f}")
    b = Bench(args, stack, work)
    one, two = b.celery_runs()
    light = b.light_runs()
    overheads = b.overheads()
    worker_hwm = status_mib(b.workers[0].pid, "VmHWM")
    report(args, [one, two, *light], overheads, worker_hwm)
    scaling_after = machine_scaling()
    print(
        f"  machine baseline, 2 vs 1 pure-Python processes: {scaling:.2f} before, {scaling_after:.2f} after"
    )
    return scaling


def report(
    args: argparse.Namespace, runs: list[Run], overheads: list[Overhead], worker_hwm: float
) -> None:
    one, two, light1, light = runs
    print("\n" + "=" * 100)
    print(
        f"infer cycle, {args.series:,} series x {one.cycles[0].points} points, "
        f"{len(one.cycles)} timed cycles (median); phases are worker seconds summed over shards"
    )
    print(
        f"{'configuration':<48} {'warm-up s':>9} {'median s':>9} {'series*pts/s':>13}  "
        + " ".join(f"{p:>7}" for p in PHASES)
    )
    for run in runs:
        ph = run.phases()
        print(
            f"{run.name:<48} {run.warmup.wall:>9.2f} {run.median:>9.2f} "
            f"{run.throughput():>13,.0f}  " + " ".join(f"{ph[p]:>7.2f}" for p in PHASES)
        )
    print("\nCPU seconds over the timed cycles (all of them, not per cycle):")
    for run in runs:
        print(f"  {run.name:<48} " + ", ".join(f"{k} {v:.1f}" for k, v in run.cpu.items()))
    print(
        "peak RSS (VmHWM): "
        + ", ".join(f"{k} {v:,.0f} MiB" for run in runs for k, v in run.rss.items())
        + f"; worker 1 at the end {worker_hwm:,.0f} MiB"
    )
    print(f"\nper-task overhead, median of {args.repeats} (ms)")
    print(f"{'job':<48} {'celery':>8} {'on worker':>10} {'threads':>8} {'diff':>8} {'ratio':>6}")
    for o in overheads:
        c, w, t, d, r = o.row()
        print(
            f"{o.name:<48} {c * 1e3:>8.0f} {w * 1e3:>10.0f} {t * 1e3:>8.0f} {d * 1e3:>8.0f} {r:>6.2f}"
        )
    print("(results are polled every 10 ms for 2 s, then every 100 ms)")
    ratio = two.throughput() / one.throughput()
    print("\nkey ratios")
    print(f"  2 vs 1 worker processes, throughput: {ratio:.2f} (goal >= 1.7)")
    print(f"  light mode, 2 threads vs 1 thread: {light.throughput() / light1.throughput():.2f}")
    print(
        f"  1 worker process vs light mode on 1 thread: {one.throughput() / light1.throughput():.2f}"
    )
    print(
        f"  light mode (2 threads) vs 1 worker process: {light.throughput() / one.throughput():.2f}"
    )
    print(
        f"  light mode (2 threads) vs 2 worker processes: {light.throughput() / two.throughput():.2f}"
    )
    shard = overheads[0].row()
    empty = overheads[1].row()
    print(
        f"  one shard, Celery / thread pool: {shard[4]:.2f} (+{shard[3] * 1e3:.0f} ms); "
        f"almost empty job: +{empty[3] * 1e3:.0f} ms"
    )


if __name__ == "__main__":
    main()

"""End to end against a local VictoriaMetrics: read 10,000 series x 1,440 points with the
reader, write 10,000 x 4 series x 60 points with the writer; seconds and peak RSS.

The data is seeded by a separate process (so its memory does not count), then this process
reads and writes. Needs `victoria-metrics` on PATH (Debian: apt-get install victoria-metrics).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import peak_rss_mib

from openanomaly.adapters.metrics_reader.prometheus import PrometheusReader
from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
from openanomaly.domain.labels import output_series_labels
from openanomaly.local_tsdb import LocalVictoriaMetrics
from openanomaly.ports import OutputSeries

STEP_MS = 60_000


def seed(url: str, series: int, points: int, end_ms: int, outbox: str) -> None:
    writer = RemoteWriteWriter(TSDBSettings(url=url), RemoteWriteSettings(), Path(outbox))
    ts = end_ms - (points - 1) * STEP_MS + np.arange(points, dtype=np.int64) * STEP_MS
    rng = np.random.default_rng(1)
    for first in range(0, series, 1000):
        batch = []
        for i in range(first, min(first + 1000, series)):
            labels = (("__name__", "bench_input"), ("instance", f"host-{i}:9100"), ("job", "node"))
            batch.append(OutputSeries(labels, ts, np.round(rng.normal(50, 5, points), 4)))
        result = writer.write(batch)
        assert result.accepted == len(batch) * points, result
    writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--points", type=int, default=1_440)
    parser.add_argument("--write-points", type=int, default=60)
    parser.add_argument(
        "--max-samples", type=int, default=1_000_000, help="tsdb.max_samples_per_request"
    )
    parser.add_argument("--concurrency", type=int, default=4, help="tsdb.read_concurrency")
    parser.add_argument(
        "--seed-only", nargs=3, metavar=("URL", "END_MS", "OUTBOX"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.seed_only:
        url, end_ms, outbox = args.seed_only
        seed(url, args.series, args.points, int(end_ms), outbox)
        return

    work = Path(tempfile.mkdtemp(prefix="oa-bench-"))
    end_ms = int((datetime.now(UTC) - timedelta(hours=1)).timestamp() * 1000) // STEP_MS * STEP_MS
    with LocalVictoriaMetrics(work / "vm") as vm:
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--series",
                str(args.series),
                "--points",
                str(args.points),
                "--seed-only",
                vm.url,
                str(end_ms),
                str(work / "seed-outbox"),
            ],
            check=True,
        )
        vm.flush()
        print(
            f"seeded {args.series:,} x {args.points:,} points in {time.perf_counter() - started:.1f} s"
        )
        settings = TSDBSettings(
            url=vm.url,
            timeout=timedelta(minutes=5),
            max_samples_per_request=args.max_samples,
            read_concurrency=args.concurrency,
        )
        reader = PrometheusReader(settings)
        rss_before = peak_rss_mib()
        started = time.perf_counter()
        start = datetime.fromtimestamp((end_ms - (args.points - 1) * STEP_MS) / 1000, UTC)
        frame = reader.query_range(
            "bench_input",
            start,
            datetime.fromtimestamp(end_ms / 1000, UTC),
            timedelta(minutes=1),
            max_series=args.series,
        )
        read_s = time.perf_counter() - started
        assert frame.series_count == args.series, frame.series_count
        assert len(frame.data) == args.series * args.points, len(frame.data)
        print(
            f"read  {args.series:,} series x {args.points:,} points: {read_s:6.2f} s, "
            f"{len(frame.data) / read_s:,.0f} samples/s, {reader.bytes_read / 1e6:,.0f} MB of JSON, "
            f"peak RSS {peak_rss_mib():,.0f} MiB (was {rss_before:,.0f})"
        )
        del frame

        writer = RemoteWriteWriter(settings, RemoteWriteSettings(), work / "outbox")
        ts = end_ms + STEP_MS + np.arange(args.write_points, dtype=np.int64) * STEP_MS
        rng = np.random.default_rng(2)
        out = []
        for i in range(args.series):
            by_kind = output_series_labels(
                "anomaly",
                {"__name__": "bench_input", "instance": f"host-{i}:9100", "job": "node"},
                {"pipeline": "bench", "model": "AutoETS"},
            )
            out += [
                OutputSeries(labels, ts, rng.normal(size=args.write_points))
                for labels in by_kind.values()
            ]
        started = time.perf_counter()
        result = writer.write(out)
        write_s = time.perf_counter() - started
        total = len(out) * args.write_points
        assert result.accepted == total, result
        print(
            f"write {len(out):,} series x {args.write_points} points: {write_s:6.2f} s, "
            f"{total / write_s:,.0f} samples/s, peak RSS {peak_rss_mib():,.0f} MiB"
        )
        writer.close()
        reader.close()


if __name__ == "__main__":
    main()

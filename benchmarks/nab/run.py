"""OpenAnomaly on the Numenta Anomaly Benchmark, through the product's own paths.

For every NAB file (../shared/nab, see its README) one pipeline is written: the template's
settings (by default none at all, i.e. what a user gets without a model section) with `step` set
to the file's sampling interval, the one property of the data a user always states. Then:

- csv path: `openanomaly backtest --csv <file>`, the offline path;
- tsdb path: the file is remote-written into a local VictoriaMetrics (timestamps shifted by whole
  days to end within the last day, one series per file, label `file`), and `openanomaly backtest`
  reads it back through query_range with `avg_over_time(nab_value{file="..."}[<step>])`.

Both score every point after NAB's probation period, refitting as the daemon would (train.every
on train.window before the refit, nothing after it: no look-ahead), each file from scratch. A
row's anomaly score is that of its step, mapped into [0, 1] by s / (1 + s); `score > 1` is
NAB threshold 0.5. Results are NAB result files under --out, scored with `openanomaly.eval.nab`.

    uv run --no-sync python benchmarks/nab/run.py                  # both paths, the defaults
    uv run --no-sync python benchmarks/nab/run.py --path csv --set model.name=AutoARIMA
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from openanomaly.eval.nab import Corpus, NabFile, load_corpus, score_corpus, write_results

NAB = ROOT.parent / "shared" / "nab"
METRIC = "nab_value"
FIXED = float(np.nextafter(0.5, 1.0))  # s / (1 + s) > 0.5  <=>  s > 1
RAW_DIR: Path | None = None


def file_step(f: NabFile) -> int:
    """The sampling interval in seconds: the median of the positive gaps between rows."""
    ns = pd.DatetimeIndex(f.timestamps).asi8
    gaps = np.diff(ns)
    return int(np.median(gaps[gaps > 0]) // 1_000_000_000)


def slots(f: NabFile, step_s: int, shift_ns: int = 0) -> np.ndarray:
    """Each row's step: the grid time t whose (t - step, t] holds it (as a TSDB range query and
    the CSV reader put it)."""
    ns = pd.DatetimeIndex(f.timestamps).asi8 + shift_ns
    step_ns = step_s * 1_000_000_000
    return -(-ns // step_ns) * step_ns


def pipeline_doc(template: dict[str, Any], step_s: int, query: str) -> dict[str, Any]:
    return {**template, "name": "nab", "query": query, "step": f"{step_s}s"}


def iso(ns: int) -> str:
    return pd.Timestamp(ns, tz="UTC").isoformat()


def backtest(
    f: NabFile, template: dict[str, Any], work: Path, *, tsdb: str | None, shift_ns: int
) -> tuple[np.ndarray, float]:
    """Row scores (raw, NaN where not scored) and the wall time of the backtest."""
    step_s = file_step(f)
    slot = slots(f, step_s, shift_ns)
    query = f'avg_over_time({METRIC}{{file="{f.key}"}}[{step_s}s])' if tsdb else "nab"
    folder = work / f.key.replace("/", "__")
    (folder / "p").mkdir(parents=True, exist_ok=True)
    (folder / "p" / "nab.yaml").write_text(yaml.safe_dump(pipeline_doc(template, step_s, query)))
    out = folder / "scored.csv"
    command = [
        sys.executable, "-m", "openanomaly", "backtest", "nab",
        "--pipelines-dir", str(folder / "p"),
        "--from", iso(int(slot[f.probation])), "--to", iso(int(slot[-1])),
        "--out", str(out), "--log-level", "error",
    ]  # fmt: skip
    command += ["--tsdb-url", tsdb] if tsdb else ["--csv", str(NAB / "data" / f.key)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0 and not out.exists():
        raise RuntimeError(f"{f.key}: backtest failed:\n{done.stderr[-2000:]}")
    scored = pd.read_csv(out)
    stamps = pd.to_datetime(scored["ds"], utc=True).astype("int64").to_numpy()
    table = scored.set_index(stamps)
    table = table[~table.index.duplicated()].reindex(slot)
    if RAW_DIR is not None:  # the whole scored table per row, for offline analysis (--raw)
        table.assign(value=f.values).reset_index(drop=True).to_pickle(
            RAW_DIR / (f.key.replace("/", "__") + ".pkl")
        )
    return table["score"].to_numpy(dtype=np.float64), seconds


def write_to_tsdb(corpus: Corpus, url: str, shift: dict[str, int]) -> None:
    from openanomaly.adapters.metrics_writer.remote_write import RemoteWriteWriter
    from openanomaly.config.settings import RemoteWriteSettings, TSDBSettings
    from openanomaly.domain.labels import output_labels
    from openanomaly.ports import OutputSeries

    series = []
    for key, f in corpus.files.items():
        ns = pd.DatetimeIndex(f.timestamps).asi8 + shift[key]
        order = np.argsort(ns, kind="stable")  # one file's clock steps back an hour
        series.append(
            OutputSeries(
                output_labels(METRIC, {"file": key}, {}),
                (ns[order] // 1_000_000).astype(np.int64),
                np.asarray(f.values, dtype=np.float64)[order],
            )
        )
    with tempfile.TemporaryDirectory() as outbox:
        writer = RemoteWriteWriter(TSDBSettings(url=url), RemoteWriteSettings(), Path(outbox))
        result = writer.write(series)
        writer.close(30)
    if result.queued or result.dropped:
        raise RuntimeError(f"remote write incomplete: {result}")


def day_shifts(corpus: Corpus) -> dict[str, int]:
    """Whole days per file so that its last row lands within the last day (whole days keep
    every step grid, and the seasonal phase of daily patterns, where it was)."""
    day = 86_400 * 1_000_000_000
    latest = time.time_ns() - 3_600 * 1_000_000_000
    return {
        key: (latest - int(pd.DatetimeIndex(f.timestamps).asi8.max())) // day * day
        for key, f in corpus.files.items()
    }


def run_path(
    corpus: Corpus,
    template: dict[str, Any],
    work: Path,
    *,
    jobs: int,
    tsdb: str | None,
    shifts: dict[str, int],
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    keys = sorted(corpus.files, key=lambda k: -corpus.files[k].rows)  # longest first
    with ThreadPoolExecutor(jobs) as pool:
        futures = {
            k: pool.submit(
                backtest,
                corpus.files[k],
                template,
                work,
                tsdb=tsdb,
                shift_ns=shifts.get(k, 0) if tsdb else 0,
            )
            for k in keys
        }
        done = {k: fut.result() for k, fut in futures.items()}
    return {k: v[0] for k, v in done.items()}, {k: v[1] for k, v in done.items()}


def to_unit(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """NAB wants [0, 1]: s / (1 + s), monotonic, so s > 1 is 0.5; unscored rows are 0."""
    out = {}
    for key, score in raw.items():
        s = np.nan_to_num(np.maximum(score, 0), nan=0.0, posinf=1e6)
        out[key] = s / (1 + s)
    return out


def report(corpus: Corpus, scores: dict[str, np.ndarray], label: str) -> dict[str, Any]:
    summary: dict[str, Any] = {"label": label, "profiles": {}}
    for profile in corpus.profiles:
        best = score_corpus(corpus, scores, profile)
        fixed = score_corpus(corpus, scores, profile, threshold=FIXED)
        summary["profiles"][profile] = {
            "optimised": round(best.normalized, 2),
            "threshold": best.threshold,
            "detected": best.windows_detected,
            "fixed": round(fixed.normalized, 2),
            "fixed_detected": fixed.windows_detected,
            "fixed_fp_rows": sum(s.fp for s in fixed.files.values()),
            "categories": {c: round(best.category(c)[1], 2) for c in corpus.categories()},
            "categories_fixed": {c: round(fixed.category(c)[1], 2) for c in corpus.categories()},
        }
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pipeline", type=Path, help="YAML template (default: no settings)")
    parser.add_argument("--set", action="append", default=[], help="key.path=value (YAML)")
    parser.add_argument("--path", choices=["csv", "tsdb", "both"], default="both")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--only", help="files whose key contains this")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "nab" / "out")
    parser.add_argument("--label", default="openanomaly")
    parser.add_argument("--raw", type=Path, help="also keep every scored row here (pickles)")
    args = parser.parse_args()
    if args.raw:
        global RAW_DIR  # noqa: PLW0603 - a flag of this script, read by the worker threads
        RAW_DIR = args.raw
        RAW_DIR.mkdir(parents=True, exist_ok=True)

    template: dict[str, Any] = yaml.safe_load(args.pipeline.read_text()) if args.pipeline else {}
    for item in args.set:
        path, _, value = item.partition("=")
        node = template
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    corpus = load_corpus(NAB)
    if args.only:
        corpus.files = {k: f for k, f in corpus.files.items() if args.only in k}
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"template": template, "paths": {}}
    raw_by_path = {}
    with tempfile.TemporaryDirectory(prefix="oa-nab-") as tmp:
        for path in ["csv", "tsdb"] if args.path == "both" else [args.path]:
            started = time.perf_counter()
            raw, seconds = run_one_path(path, corpus, template, Path(tmp), args.jobs)
            raw_by_path[path] = raw
            scores = to_unit(raw)
            write_results(corpus, args.out / path, args.label, scores)
            summary = report(corpus, scores, args.label)
            summary["wall_seconds"] = round(time.perf_counter() - started, 1)
            summary["backtest_seconds"] = round(sum(seconds.values()), 1)
            results["paths"][path] = summary
            print_summary(path, summary)
    if len(raw_by_path) == 2:
        largest = max(
            float(np.max(np.abs(np.nan_to_num(raw_by_path["csv"][k], nan=-1)
                                - np.nan_to_num(raw_by_path["tsdb"][k], nan=-1))))
            for k in corpus.files
        )  # fmt: skip
        results["max_abs_score_difference"] = largest
        print(f"csv vs tsdb: largest difference of a row's raw score: {largest:.3g}")
    (args.out / "summary.json").write_text(json.dumps(results, indent=2, default=str))


def run_one_path(
    path: str, corpus: Corpus, template: dict[str, Any], tmp: Path, jobs: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    if path == "csv":
        return run_path(corpus, template, tmp / "csv", jobs=jobs, tsdb=None, shifts={})
    from openanomaly.local_tsdb import LocalVictoriaMetrics

    shifts = day_shifts(corpus)
    with LocalVictoriaMetrics(tmp / "vm").start() as vm:
        write_to_tsdb(corpus, vm.url, shifts)
        vm.flush()
        return run_path(corpus, template, tmp / "tsdb", jobs=jobs, tsdb=vm.url, shifts=shifts)


def print_summary(path: str, summary: dict[str, Any]) -> None:
    print(
        f"== {path} path: wall {summary['wall_seconds']} s (backtests {summary['backtest_seconds']} s)"
    )
    for profile, p in summary["profiles"].items():
        print(
            f"  {profile:20s} optimised {p['optimised']:6.2f} (threshold {p['threshold']:.4f}, "
            f"{p['detected']} windows)  score>1 {p['fixed']:6.2f} ({p['fixed_detected']} windows, "
            f"{p['fixed_fp_rows']} FP rows)"
        )
    std = summary["profiles"]["standard"]
    print("  standard by category: " + ", ".join(f"{c} {v}" for c, v in std["categories"].items()))


if __name__ == "__main__":
    main()

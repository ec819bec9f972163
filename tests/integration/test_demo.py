"""`openanomaly demo` end to end: it starts its own VictoriaMetrics, seeds the synthetic
history, backtests, scores live, and finds every injected incident."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from openanomaly.local_tsdb import LocalVictoriaMetrics
from tests.conftest import require_binary
from tests.daemon_harness import ROOT

pytestmark = pytest.mark.integration


def run_demo(
    tmp_path: Path, *args: str, path: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OA_")}
    env["PYTHONPATH"] = str(ROOT)
    if path is not None:
        env["PATH"] = path
    return subprocess.run(
        [sys.executable, "-m", "openanomaly", "demo", "--out", str(tmp_path / "out"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_demo_finds_every_injected_incident(tmp_path: Path) -> None:
    require_binary(LocalVictoriaMetrics)
    done = run_demo(tmp_path, "--live", "25s")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_found_all(done)
    # The live part trained and scored as the daemon does, and wrote to the TSDB.
    live = [line for line in done.stderr.splitlines() if line.startswith("infer ")]
    assert len(live) >= 2, done.stderr[-2000:]
    assert all(": ok, " in line for line in live), live
    # The first cycle of each pipeline scores up to max_catchup (2h) of its 3 series.
    first = [re.search(r", 3 series, (\d+) samples written", line) for line in live[:2]]
    assert all(m is not None and 12 <= int(m.group(1)) <= 288 for m in first), live


@pytest.mark.parametrize("at", ["2026-03-02T09:00:00+00:00", "2026-03-07T21:30:00+00:00"])
def test_the_demo_finds_them_at_any_time_of_the_week(tmp_path: Path, at: str) -> None:
    """The data's daily and weekly phase follows the clock: a Monday morning and a Saturday
    evening, pinned, so a failure reproduces."""
    require_binary(LocalVictoriaMetrics)
    done = run_demo(tmp_path, "--live", "0s", "--at", at)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_found_all(done)


def assert_found_all(done: subprocess.CompletedProcess[str]) -> None:
    assert "starting victoria-metrics" in done.stderr
    rows = [line for line in done.stdout.splitlines() if re.search(r"\s(yes|NO)\s", line)]
    assert len(rows) == 4, done.stdout
    assert all(" yes " in row for row in rows), done.stdout
    found = re.search(r"found (\d+) of (\d+) injected incidents; (\d+) other alarm", done.stdout)
    assert found is not None, done.stdout
    assert found.group(1) == found.group(2) == "4"
    assert int(found.group(3)) <= 10  # false alarms: a handful in ~3,500 scored points
    html = Path(done.args[done.args.index("--out") + 1], "demo.html").read_text()
    assert html.count("<svg") == 6  # one panel per series: 3 services, 3 nodes


def test_without_a_tsdb_the_demo_says_what_to_install(tmp_path: Path) -> None:
    python_only = str(Path(sys.executable).parent)  # no victoria-metrics, no prometheus
    done = run_demo(tmp_path, "--live", "0s", path=python_only)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "apt-get install victoria-metrics" in done.stderr
    assert "--tsdb-url" in done.stderr

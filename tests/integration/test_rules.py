"""The alerting rules load in the real tools: promtool checks them and runs their unit tests
(deploy/rules/openanomaly.rules.test.yml), and vmalert validates them in dry-run mode. The
dashboard's queries, with its variables filled in, parse in both tools and run on both TSDBs.

promtool comes with Debian's `prometheus` package, vmalert with `victoria-metrics`; without them
these tests are skipped locally and fail under CI (tests/conftest.py's policy)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from openanomaly.errors import OpenAnomalyError
from openanomaly.local_tsdb import LocalTSDB
from tests.conftest import require_executable
from tests.unit.test_dashboard import DASHBOARD, dashboard_exprs

pytestmark = pytest.mark.integration

RULES_DIR = Path(__file__).resolve().parents[2] / "deploy" / "rules"
RULES = RULES_DIR / "openanomaly.rules.yml"
RULE_TESTS = RULES_DIR / "openanomaly.rules.test.yml"

# What Grafana puts in place of the dashboard's variables.
VARIABLE_VALUES = {
    "pipeline": ".*",
    "instance": ".*",
    "series": 'metric="node_load1",model="MSTL",pipeline="node-cpu"',
    "__rate_interval": "1m",
    "__interval": "1m",
    "__range": "1h",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
_VARIABLE_QUERY = re.compile(
    r"^\s*(?:label_values\s*\((.*),\s*\w+\s*\)|query_result\s*\((.*)\))\s*$"
)


def dashboard_promql() -> dict[str, str]:
    """Every query of the dashboard as the TSDB receives it: variables filled in, and the
    PromQL inside label_values(...) and query_result(...) for variable queries."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    exprs, variable_keys = dashboard_exprs(dashboard)
    queries = {}
    for where, expr in exprs.items():
        if where in variable_keys:
            match = _VARIABLE_QUERY.match(expr)
            assert match, f"{where}: unexpected variable query {expr!r}"
            promql = match.group(1) or match.group(2)
        else:
            promql = expr
        queries[where] = _VARIABLE.sub(lambda m: VARIABLE_VALUES[m.group(1) or m.group(2)], promql)
    return queries


def run(command: list[str], cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def assert_succeeded(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )


def test_promtool_accepts_the_rules() -> None:
    promtool = require_executable("promtool", "prometheus")
    result = run([promtool, "check", "rules", str(RULES)])
    assert_succeeded(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    promtool = require_executable("promtool", "prometheus")
    # rule_files in the test file are relative to it: run from its folder.
    result = run([promtool, "test", "rules", RULE_TESTS.name])
    assert_succeeded(result)
    assert "SUCCESS" in result.stdout + result.stderr


def test_vmalert_accepts_the_rules() -> None:
    vmalert = require_executable("vmalert", "victoria-metrics")
    # -dryRun parses every group, expression and annotation template, then exits.
    result = run([vmalert, f"-rule={RULES}", "-dryRun", "-loggerLevel=ERROR"])
    assert_succeeded(result)


def test_vmalert_dry_run_fails_on_a_broken_rule(tmp_path: Path) -> None:
    """The dry run really checks: otherwise the test above would prove nothing."""
    vmalert = require_executable("vmalert", "victoria-metrics")
    broken = tmp_path / "broken.rules.yml"
    broken.write_text(
        "groups:\n"
        "  - name: broken\n"
        "    rules:\n"
        "      - alert: Broken\n"
        "        expr: sum(rate(anomaly_score[5m])\n"
    )
    result = run([vmalert, f"-rule={broken}", "-dryRun", "-loggerLevel=ERROR"], cwd=tmp_path)
    assert result.returncode != 0, result.stdout + result.stderr


def _dashboard_as_rules(path: Path) -> Path:
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr}
        for number, expr in enumerate(dashboard_promql().values())
    ]
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    return path


def test_the_dashboard_queries_parse_in_promtool(tmp_path: Path) -> None:
    promtool = require_executable("promtool", "prometheus")
    rules = _dashboard_as_rules(tmp_path / "dashboard.rules.yml")
    assert_succeeded(run([promtool, "check", "rules", str(rules)], cwd=tmp_path))


def test_the_dashboard_queries_parse_in_vmalert(tmp_path: Path) -> None:
    vmalert = require_executable("vmalert", "victoria-metrics")
    rules = _dashboard_as_rules(tmp_path / "dashboard.rules.yml")
    result = run([vmalert, f"-rule={rules}", "-dryRun", "-loggerLevel=ERROR"], cwd=tmp_path)
    assert_succeeded(result)


def test_the_dashboard_queries_run(tsdb: LocalTSDB) -> None:
    failures = []
    for where, promql in dashboard_promql().items():
        try:
            tsdb.query(promql)
        except OpenAnomalyError as exc:  # collect them all, then report
            failures.append(f"{where}: {exc}")
    assert not failures, "\n".join(failures)

"""The Grafana dashboard and the alerting rules we ship are well formed, and every metric they
query is one OpenAnomaly really exports: the daemon's /metrics (built here from DaemonMetrics)
or the output series its pipelines write (built from OUTPUT_KINDS and the default prefix)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from openanomaly.config.pipeline import OutputSpec
from openanomaly.daemon.metrics import DaemonMetrics
from openanomaly.domain.labels import OUTPUT_KINDS
from openanomaly.ports import RunRecord

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "openanomaly.json"
RULES = DEPLOY / "rules" / "openanomaly.rules.yml"
PROVISIONING = DEPLOY / "grafana" / "provisioning"

DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}
# Series the scraper makes, not the daemon: OpenAnomalyDown alerts on the scrape job's `up`.
SCRAPE_METRICS = frozenset({"up"})
# Grafana's own variables (https://grafana.com/docs/grafana/latest/dashboards/variables/).
GRAFANA_VARIABLES = frozenset(
    {
        "__interval",
        "__interval_ms",
        "__rate_interval",
        "__rate_interval_ms",
        "__range",
        "__range_s",
        "__range_ms",
        "__from",
        "__to",
        "__dashboard",
        "__org",
        "__user",
        "__all",
        "timeFilter",
    }
)

Json = dict[str, Any]


# --- what OpenAnomaly exports ------------------------------------------------------------------


def output_metric_names() -> set[str]:
    """anomaly_score, anomaly_yhat, ...: the default prefix and the kinds the writer uses."""
    prefix = OutputSpec.model_fields["prefix"].default
    assert isinstance(prefix, str)
    return {f"{prefix}_{kind}" for kind in OUTPUT_KINDS}


def _daemon_exposition() -> str:
    """The daemon's /metrics text, with every labelled metric given a value so it shows."""
    metrics = DaemonMetrics(CollectorRegistry())
    metrics.outbox(lambda: 0.0, lambda: 0.0)
    now = datetime.now(UTC)
    metrics.record(
        RunRecord(
            pipeline="p",
            kind="infer",
            scheduled=now,
            started=now,
            finished=now + timedelta(seconds=2),
            status="ok",
            series_in=3,
            series_scored=2,
            series_skipped=1,
            samples_written=8,
        )
    )
    metrics.model_created.labels("p").set(now.timestamp())
    metrics.reloads.labels("ok").inc()
    return generate_latest(metrics.registry).decode()


def _sample_names(exposition: str) -> set[str]:
    return {
        re.split(r"[{\s]", line, maxsplit=1)[0]
        for line in exposition.splitlines()
        if line and not line.startswith("#")
    }


def _families(exposition: str) -> dict[str, str]:
    """Metric family -> type, from the `# TYPE` lines; the `_created` gauges prometheus_client
    adds beside counters and histograms are part of theirs."""
    families: dict[str, str] = {}
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            families[name] = kind
    created = set()
    for name in families:
        base = name.removesuffix("_created")
        if base != name and {base, base + "_total"} & set(families):
            created.add(name)
    return {name: kind for name, kind in families.items() if name not in created}


@cache
def daemon_metric_names() -> frozenset[str]:
    return frozenset(_sample_names(_daemon_exposition()))


def known_metric_names() -> frozenset[str]:
    return daemon_metric_names() | output_metric_names() | SCRAPE_METRICS


def test_every_daemon_metric_family_has_a_sample_to_check_against() -> None:
    """A new labelled metric prints no sample until set: set it in _daemon_exposition, or
    dashboard and rules could never use it."""
    exposition = _daemon_exposition()
    names = _sample_names(exposition)
    empty = [family for family in _families(exposition) if not _family_samples(family, names)]
    assert not empty, f"set a value for these metrics in _daemon_exposition: {empty}"
    assert {"openanomaly_runs_total", "openanomaly_run_duration_seconds_bucket"} <= names
    assert {"openanomaly_outbox_batches", "openanomaly_outbox_bytes"} <= names
    assert "openanomaly_build_info" in names


def _family_samples(family: str, names: Iterable[str]) -> set[str]:
    suffixes = ("", "_total", "_created", "_bucket", "_sum", "_count", "_info")
    return {name for name in names if name in {family + suffix for suffix in suffixes}}


def test_output_names_come_from_the_code() -> None:
    assert output_metric_names() == {
        "anomaly_score",
        "anomaly_yhat",
        "anomaly_yhat_lower",
        "anomaly_yhat_upper",
    }


# --- metric names in PromQL --------------------------------------------------------------------

_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\[\[[^\]]*\]\]|\$[A-Za-z_][A-Za-z0-9_]*")
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r"""__name__\s*(=~|!=|!~|=)\s*("(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*')""")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_TOKEN = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*|[0-9.][0-9A-Za-z_.]*|\S")
_IDENTIFIER = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")

LABEL_LIST_MODIFIERS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
AGGREGATIONS = frozenset(
    {
        "sum",
        "avg",
        "max",
        "min",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "limitk",
        "limit_ratio",
    }
)
KEYWORDS = (
    LABEL_LIST_MODIFIERS
    | AGGREGATIONS
    | {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects.

    Grafana variables, string literals, `{...}` matchers and `[...]` ranges are removed first
    (an exact `__name__="x"` matcher still counts as x); then an identifier is a metric unless it
    is a function (followed by `(`), a keyword or aggregation, or a label in a by/on/... list.
    Numbers and durations (`2`, `1e-3`, `5m`) are not identifiers.
    """
    text = _GRAFANA_VARIABLE.sub(" ", expr)
    names: set[str] = set()
    for operator, quoted in _NAME_MATCHER.findall(text):
        value = quoted[1:-1]
        names.add(value if operator == "=" else f"{{__name__{operator}{quoted}}}")
    text = _STRING.sub('""', text)
    text = _MATCHERS.sub(" ", text)
    while _RANGE.search(text):  # subqueries may nest a range in a range
        text = _RANGE.sub(" ", text)
    tokens = _TOKEN.findall(text)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if not _IDENTIFIER.fullmatch(token):
            i += 1
            continue
        lowered = token.lower()
        if lowered in LABEL_LIST_MODIFIERS and following == "(":
            i = _after_closing_paren(tokens, i + 1)
            continue
        if following != "(" and lowered not in KEYWORDS:
            names.add(token)
        i += 1
    return names


def _after_closing_paren(tokens: list[str], open_at: int) -> int:
    depth = 0
    for j in range(open_at, len(tokens)):
        if tokens[j] == "(":
            depth += 1
        elif tokens[j] == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise ValueError(f"unbalanced parentheses in {' '.join(tokens)!r}")


_LABEL_VALUES = re.compile(
    r"^\s*label_values\s*\((?:(.*),)?\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", re.S
)
_QUERY_RESULT = re.compile(r"^\s*query_result\s*\((.*)\)\s*$", re.S)
_NO_METRIC = re.compile(r"^\s*(label_names\s*\(\s*\)|metrics\s*\(.*\))\s*$", re.S)


def variable_query_metric_names(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus variable query (label_values, query_result, ...)."""
    if match := _LABEL_VALUES.match(query):
        return promql_metric_names(match.group(1) or "")
    if match := _QUERY_RESULT.match(query):
        return promql_metric_names(match.group(1))
    if _NO_METRIC.match(query):
        return set()
    return promql_metric_names(query)


def unknown_metric_names(
    exprs: Mapping[str, str], known: Iterable[str], *, variable_queries: Iterable[str] = ()
) -> dict[str, list[str]]:
    """Unknown metric name -> where it is used (the keys of `exprs`)."""
    known_set = set(known)
    variables = set(variable_queries)
    unknown: dict[str, list[str]] = {}
    for where, expr in exprs.items():
        names = (
            variable_query_metric_names(expr) if where in variables else promql_metric_names(expr)
        )
        for name in sorted(names - known_set):
            unknown.setdefault(name, []).append(where)
    return unknown


def _describe(unknown: Mapping[str, list[str]]) -> str:
    lines = [f"  {name}: used in {', '.join(places)}" for name, places in sorted(unknown.items())]
    return "metrics that OpenAnomaly does not export:\n" + "\n".join(lines)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (pipeline, kind) (rate(openanomaly_runs_total{status="failed"}[5m]))',
            {"openanomaly_runs_total"},
        ),
        (
            'histogram_quantile(0.95, sum by (le) (rate(x_bucket{a="}",b=~"$v"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("a and on (job, instance) (b == 1)", {"a", "b"}),
        ("c / ignoring(status) group_left(kind, exported_job) d offset 5m", {"c", "d"}),
        ("e * on() group_right f", {"e", "f"}),
        ("anomaly_yhat{${series:raw}}", {"anomaly_yhat"}),
        ("time() - foo > 2 * 86400", {"foo"}),
        ("count(x > 1) or vector(0)", {"x"}),
        ('{__name__="foo", job="a"} unless bar', {"foo", "bar"}),
        ('{__name__=~"fo+"}', {'{__name__=~"fo+"}'}),
        ("sum(x) BY (a, b) AND without_thing", {"x", "without_thing"}),
        ("max_over_time((y > bool 1)[1h:5m]) - max_over_time(z[$__range] offset 1d)", {"y", "z"}),
        ("1e-3 * q + .5 - 0x1F", {"q"}),
        ("rate(m[5m] @ end()) / topk(3, n)", {"m", "n"}),
        ('label_replace(up, "dst", "$1", "src", "(.*)")', {"up"}),
        ("sum without (instance) (k:recorded:rate5m)", {"k:recorded:rate5m"}),
        ("[[old_style]] + new_style", {"new_style"}),
    ],
)
def test_promql_metric_names(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("label_values(anomaly_score, pipeline)", {"anomaly_score"}),
        ('label_values(anomaly_score{pipeline=~"$p"}, metric)', {"anomaly_score"}),
        ("label_values(instance)", set()),
        ("label_names()", set()),
        ("metrics(openanomaly_.*)", set()),
        ("query_result(last_over_time(anomaly_score[$__range]))", {"anomaly_score"}),
        ("up", {"up"}),
    ],
)
def test_variable_query_metric_names(query: str, names: set[str]) -> None:
    assert variable_query_metric_names(query) == names


def test_unknown_names_are_listed_with_where_they_are_used() -> None:
    exprs = {"panel A": "nope_total + anomaly_score", "panel B": "rate(nope_total[5m]) / typo"}
    unknown = unknown_metric_names(exprs, known_metric_names())
    assert unknown == {"nope_total": ["panel A", "panel B"], "typo": ["panel B"]}
    assert _describe(unknown) == (
        "metrics that OpenAnomaly does not export:\n"
        "  nope_total: used in panel A, panel B\n"
        "  typo: used in panel B"
    )


# --- the dashboard -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> Json:
    data = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def all_panels(panels: list[Json]) -> Iterator[Json]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


def query_panels(dashboard: Json) -> list[Json]:
    return [panel for panel in all_panels(dashboard["panels"]) if panel["type"] != "row"]


def variables(dashboard: Json) -> dict[str, Json]:
    return {variable["name"]: variable for variable in dashboard["templating"]["list"]}


def variable_query(variable: Json) -> str:
    query = variable["query"]
    if isinstance(query, dict):  # the newer editor's form
        query = query["query"]
    assert isinstance(query, str)
    return query


def dashboard_exprs(dashboard: Json) -> tuple[dict[str, str], list[str]]:
    """Every PromQL expression, keyed by where it is, and which keys are variable queries."""
    exprs: dict[str, str] = {}
    for panel in query_panels(dashboard):
        for target in panel["targets"]:
            exprs[f"panel {panel['id']} {panel['title']!r} {target['refId']}"] = target["expr"]
    variable_keys = []
    for name, variable in variables(dashboard).items():
        if variable["type"] == "query":
            key = f"variable {name}"
            exprs[key] = variable_query(variable)
            variable_keys.append(key)
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            exprs[f"annotation {annotation['name']!r}"] = annotation["expr"]
    return exprs, variable_keys


def test_the_dashboard_identifies_itself(dashboard: Json) -> None:
    assert dashboard["uid"] == "openanomaly"
    assert dashboard["title"] == "OpenAnomaly"
    assert isinstance(dashboard["schemaVersion"], int)
    assert 36 <= dashboard["schemaVersion"] <= 41
    assert "id" not in dashboard or dashboard["id"] is None  # provisioning assigns it
    assert dashboard["time"]["from"].startswith("now-")


def test_panels_have_unique_ids_and_a_tidy_grid(dashboard: Json) -> None:
    panels = list(all_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        assert panel["type"], panel
        assert panel["title"], panel
        grid = panel["gridPos"]
        assert set(grid) >= {"h", "w", "x", "y"}, panel["title"]
        assert all(type(grid[k]) is int for k in ("h", "w", "x", "y")), panel["title"]
        assert min(grid["h"], grid["w"]) > 0, panel["title"]
        assert min(grid["x"], grid["y"]) >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, f"{panel['title']} is wider than the grid"
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']} overlaps {other}"


def test_every_panel_queries_the_datasource_variable(dashboard: Json) -> None:
    for row in (panel for panel in all_panels(dashboard["panels"]) if panel["type"] == "row"):
        assert "targets" not in row, row["title"]
    panels = query_panels(dashboard)
    assert len(panels) >= 10
    for panel in panels:
        title = panel["title"]
        assert panel["datasource"] == DATASOURCE_REF, title
        assert panel["targets"], f"{title} has no query"
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), f"{title}: duplicate refIds {ref_ids}"
        for target in panel["targets"]:
            assert re.fullmatch(r"[A-Z]", target["refId"]), title
            assert isinstance(target["expr"], str), title
            assert target["expr"].strip(), title
            assert target.get("datasource", DATASOURCE_REF) == DATASOURCE_REF, title
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            assert annotation["datasource"] == DATASOURCE_REF, annotation["name"]


def test_template_variables_are_well_formed(dashboard: Json) -> None:
    listed = dashboard["templating"]["list"]
    names = [variable["name"] for variable in listed]
    assert len(names) == len(set(names)), names
    assert names[0] == "datasource"  # the others query it
    by_name = variables(dashboard)
    source = by_name["datasource"]
    assert source["type"] == "datasource"
    assert source["query"] == "prometheus"
    assert source["current"]["value"] == "victoriametrics"  # the provisioned datasource
    for variable in listed[1:]:
        assert variable["type"] == "query", variable["name"]
        assert variable["datasource"] == DATASOURCE_REF, variable["name"]
        assert variable_query(variable).strip(), variable["name"]
        assert variable["refresh"] in (1, 2), variable["name"]  # on load or on time change
        if variable.get("includeAll"):
            assert variable["multi"], variable["name"]
            assert variable["allValue"] == ".*", variable["name"]  # matches absent labels too
    pipeline = by_name["pipeline"]
    assert variable_query(pipeline) == "label_values(anomaly_score, pipeline)"
    assert pipeline["multi"]
    assert pipeline["includeAll"]


def test_every_variable_used_is_defined(dashboard: Json) -> None:
    defined = set(variables(dashboard)) | GRAFANA_VARIABLES
    exprs, _ = dashboard_exprs(dashboard)
    texts = dict(exprs)
    for panel in all_panels(dashboard["panels"]):
        texts[f"title of panel {panel['id']}"] = panel["title"]
        if "repeat" in panel:
            assert panel["repeat"] in variables(dashboard), panel["title"]
    for where, text in texts.items():
        for variable in re.findall(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]", text):
            name = next(part for part in variable if part)
            assert name in defined, f"{where} uses ${name}, which is not defined"


def test_band_overrides_fill_between_series_of_the_panel(dashboard: Json) -> None:
    banded = []
    for panel in query_panels(dashboard):
        legends = {target.get("legendFormat") for target in panel["targets"]}
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "custom.fillBelowTo":
                    assert override["matcher"]["id"] == "byName", panel["title"]
                    assert override["matcher"]["options"] in legends, panel["title"]
                    assert prop["value"] in legends, panel["title"]
                    banded.append(panel)
    assert banded, "no panel draws the forecast band"
    exprs = " ".join(target["expr"] for panel in banded for target in panel["targets"])
    assert output_metric_names() <= promql_metric_names(exprs)


def test_every_metric_in_the_dashboard_is_exported(dashboard: Json) -> None:
    exprs, variable_keys = dashboard_exprs(dashboard)
    unknown = unknown_metric_names(exprs, known_metric_names(), variable_queries=variable_keys)
    assert not unknown, _describe(unknown)


def test_the_dashboard_shows_every_metric_the_daemon_exports(dashboard: Json) -> None:
    """A metric added to DaemonMetrics belongs on the self-monitoring row too."""
    exprs, variable_keys = dashboard_exprs(dashboard)
    used: set[str] = set()
    for where, expr in exprs.items():
        used |= (
            variable_query_metric_names(expr)
            if where in variable_keys
            else promql_metric_names(expr)
        )
    names = daemon_metric_names()
    missing = [
        family
        for family in _families(_daemon_exposition())
        if not _family_samples(family, names) & used
    ]
    assert not missing, f"daemon metrics not on the dashboard: {missing}"
    assert output_metric_names() <= used


# --- the rules ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> list[Json]:
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [dict(rule, group=group["name"]) for group in data["groups"] for rule in group["rules"]]


def test_every_metric_in_the_rules_is_exported(rules: list[Json]) -> None:
    exprs = {f"{rule['group']}/{rule['alert']}": rule["expr"] for rule in rules}
    unknown = unknown_metric_names(exprs, known_metric_names())
    assert not unknown, _describe(unknown)


def test_every_alert_has_for_severity_and_annotations(rules: list[Json]) -> None:
    assert {rule["group"] for rule in rules} == {"openanomaly-anomalies", "openanomaly-self"}
    for rule in rules:
        name = rule.get("alert")
        assert name, f"recording rules are not expected here: {rule}"
        assert re.fullmatch(r"\d+[smhd]", rule["for"]), name
        assert rule["labels"]["severity"] in ("warning", "critical"), name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name
    alerts = {rule["alert"]: rule for rule in rules}
    anomaly = alerts["AnomalyDetected"]
    assert anomaly["group"] == "openanomaly-anomalies"
    assert "anomaly_score" in promql_metric_names(anomaly["expr"])
    # The series' labels are kept for routing: no aggregation in the anomaly alert.
    assert not re.search(
        r"\b(sum|avg|max|min|count|topk|bottomk)\s*(\(|by|without)", anomaly["expr"]
    )
    assert anomaly["for"] in anomaly["annotations"]["description"]


# --- Grafana provisioning ----------------------------------------------------------------------


def test_the_datasource_provisioning_points_at_victoriametrics() -> None:
    data = yaml.safe_load((PROVISIONING / "datasources" / "victoriametrics.yaml").read_text())
    assert data["apiVersion"] == 1
    (source,) = data["datasources"]
    assert source["name"] == "VictoriaMetrics"
    assert source["uid"] == "victoriametrics"
    assert source["type"] == "prometheus"
    assert source["url"] == "http://victoriametrics:8428"


def test_the_dashboard_provisioning_loads_the_dashboards_folder() -> None:
    data = yaml.safe_load((PROVISIONING / "dashboards" / "openanomaly.yaml").read_text())
    assert data["apiVersion"] == 1
    (provider,) = data["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"

"""The packaging we ship: Dockerfile, .dockerignore, compose files, the settings they mount and
the Helm chart. No Docker engine or helm runs here, so these check what can be checked from the
files: structure, cross-references between them, and that every settings value is valid."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from openanomaly.config.settings import JobSettings
from openanomaly.config.settings_loader import load_settings
from openanomaly.local_tsdb import free_port
from tests.conftest import require_executable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "openanomaly"
DATA_DIR = "/var/lib/openanomaly"
PIPELINES_DIR = "/etc/openanomaly/pipelines.d"
PORT = 8495
UID = 10001

# Files another change adds beside ours; deploy/docker-compose.yml mounts them.
DASHBOARD_FILES = (
    "rules/openanomaly.rules.yml",
    "grafana/openanomaly.json",
    "grafana/provisioning/datasources",
    "grafana/provisioning/dashboards",
)


def _duration_seconds(text: str) -> float:
    """Docker/systemd-style durations used in these files: 90s, 2min, 1m30s."""
    units = {"min": 60, "ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(min|ms|s|m|h)", text)
    assert parts, f"not a duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(float(n) * units[u] for n, u in parts)


SHUTDOWN_GRACE = JobSettings().shutdown_grace.total_seconds()


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def instruction_args(keyword: str) -> list[str]:
    return [args for kw, args in dockerfile() if kw == keyword]


def dockerfile_env() -> dict[str, str]:
    """ENV of the final stage (KEY=VALUE form)."""
    stages: list[dict[str, str]] = []
    for keyword, args in dockerfile():
        if keyword == "FROM":
            stages.append({})
        elif keyword == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"use ENV KEY=VALUE, not {args!r}"
                stages[-1][key] = value
    return stages[-1]


def healthcheck_command() -> list[str]:
    (healthcheck,) = instruction_args("HEALTHCHECK")
    match = re.search(r"CMD\s+(\[.*\])\s*$", healthcheck)
    assert match, "HEALTHCHECK should use the exec form: CMD [...]"
    command = json.loads(match.group(1))
    assert isinstance(command, list)
    return [str(part) for part in command]


def test_the_dockerfile_builds_in_two_stages_and_ships_only_the_venv() -> None:
    stages = instruction_args("FROM")
    assert len(stages) == 2, stages
    assert stages[0].lower().endswith("as builder")
    assert any(a.startswith("PYTHON_IMAGE=python:3.11-slim") for a in instruction_args("ARG"))
    runs = " ".join(instruction_args("RUN"))
    assert "pip install" in runs  # uv from PyPI, not a curl installer
    assert '"uv==' in runs
    sync = [r for r in instruction_args("RUN") if "uv sync" in r]
    assert any("--no-editable" in r for r in sync)
    for run in sync:
        assert "--locked" in run, run
        assert "--no-dev" in run, run
        assert "${extra_args}" in run  # the EXTRAS build argument, possibly empty
    instructions = dockerfile()
    builder = instructions[: instructions.index(("FROM", stages[1]))]
    builder_env = " ".join(args for keyword, args in builder if keyword == "ENV")
    for setting in ("UV_COMPILE_BYTECODE=1", "UV_LINK_MODE=copy", "UV_PYTHON_DOWNLOADS=never"):
        assert setting in builder_env
    assert any(a.startswith("EXTRAS=") for a in instruction_args("ARG"))
    copies = instruction_args("COPY")
    assert "--from=builder /opt/venv /opt/venv" in copies
    assert dockerfile_env()["PATH"].startswith("/opt/venv/bin:")


def test_the_image_runs_openanomaly_as_a_user_with_its_state_on_a_volume() -> None:
    user = instruction_args("USER")[-1]
    assert user.split(":")[0] == str(UID)  # numeric, so Kubernetes' runAsNonRoot can check it
    assert instruction_args("VOLUME") == [DATA_DIR]
    assert instruction_args("WORKDIR")[-1] == DATA_DIR
    assert instruction_args("EXPOSE") == [f"{PORT} 8501"]  # the daemon; the web UI
    assert json.loads(instruction_args("ENTRYPOINT")[-1]) == ["openanomaly"]
    assert json.loads(instruction_args("CMD")[-1]) == ["run"]  # `docker run IMAGE worker` works
    assert f"pipelines.d/ {PIPELINES_DIR}/" in instruction_args("COPY")
    command = healthcheck_command()
    assert command[0] == "python"  # the slim image has no curl
    assert "/healthz" in command[-1]


def test_the_image_environment_is_valid_settings_matching_volume_and_port(
    tmp_path: Path,
) -> None:
    env = dockerfile_env()
    settings = load_settings(None, env=env, cwd=tmp_path).settings
    assert str(settings.storage.data_dir) == DATA_DIR
    assert settings.http.host == "0.0.0.0"
    assert settings.http.port == PORT
    assert str(settings.pipelines_dir) == PIPELINES_DIR


class _Health(BaseHTTPRequestHandler):
    status = 200
    paths: list[str] = []  # noqa: RUF012 - shared with the test on purpose

    def do_GET(self) -> None:
        type(self).paths.append(self.path)
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b'{"status":"ok"}')

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[int, type[_Health]]]:
    handler = type("Handler", (_Health,), {"paths": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], handler
    finally:
        server.shutdown()
        server.server_close()


def _healthcheck(port: int) -> int:
    command = [sys.executable, *healthcheck_command()[1:]]
    env = {"OA_HTTP__LISTEN": f"0.0.0.0:{port}", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(command, check=False, env=env, capture_output=True, timeout=30)
    return result.returncode


def test_the_healthcheck_command_asks_healthz_on_the_configured_port(
    health_server: tuple[int, type[_Health]],
) -> None:
    port, handler = health_server
    assert _healthcheck(port) == 0
    assert handler.paths == ["/healthz"]
    handler.status = 500
    assert _healthcheck(port) != 0
    assert _healthcheck(free_port()) != 0  # nothing listening


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore rules: the last matching pattern wins, `!` re-includes, and a
    pattern matching a directory excludes what is inside it."""
    parts = PurePosixPath(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        body = pattern.lstrip("!").strip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def test_the_dockerignore_keeps_local_state_out_and_the_build_inputs_in() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "data/registry.db",
        "benchmarks/nab/out/table.md",
        "openanomaly/__pycache__/cli.cpython-311.pyc",
        ".mypy_cache/x",
        ".pytest_cache/v",
        "deploy/systemd/openanomaly.env",
    ):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    sources = []
    for args in instruction_args("COPY"):
        if args.startswith("--from="):
            continue
        sources += shlex.split(args)[:-1]
    assert sources
    for source in sources:
        probe = source.rstrip("/")
        assert (ROOT / probe).exists(), f"the Dockerfile copies {source}, which does not exist"
        inside = [probe, *(str(p.relative_to(ROOT)) for p in (ROOT / probe).rglob("*.py"))]
        for path in inside:
            if "__pycache__" not in path:
                assert not _ignored(path, patterns), f".dockerignore drops {path}, a build input"


# --- compose -----------------------------------------------------------------------------------


def compose(name: str) -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / name).read_text())
    assert isinstance(data, dict)
    return data


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the bind mounts: volumes whose source is a path."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def test_the_single_node_compose_file_wires_the_stack() -> None:
    services = compose("docker-compose.yml")["services"]
    assert {"victoriametrics", "openanomaly", "vmalert", "grafana"} <= set(services)

    oa = services["openanomaly"]
    assert (DEPLOY / oa["build"]["context"] / "Dockerfile").is_file()
    assert f"127.0.0.1:{PORT}:{PORT}" in oa["ports"]
    targets = {target for _, target in bind_mounts(oa)}
    assert oa["environment"]["OA_CONFIG"] in targets
    assert PIPELINES_DIR in targets
    assert f"oadata:{DATA_DIR}" in oa["volumes"]
    # Docker's default 10s would kill jobs finishing within jobs.shutdown_grace, then the flush.
    assert _duration_seconds(oa["stop_grace_period"]) > 2 * SHUTDOWN_GRACE

    vm_flags = services["victoriametrics"]["command"]
    (scrape_flag,) = [f for f in vm_flags if f.startswith("-promscrape.config=")]
    vm_mounts = {target: source for source, target in bind_mounts(services["victoriametrics"])}
    assert scrape_flag.split("=", 1)[1] in vm_mounts

    vmalert = services["vmalert"]["command"]
    assert "-datasource.url=http://victoriametrics:8428" in vmalert
    assert "-remoteWrite.url=http://victoriametrics:8428" in vmalert
    assert "-notifier.blackhole" in vmalert or any(f.startswith("-notifier.url=") for f in vmalert)
    assert rule_glob().parent == PurePosixPath("/etc/rules")
    assert ("./rules", "/etc/rules") in bind_mounts(services["vmalert"])

    ui = services["ui"]
    assert ui["image"] == oa["image"]
    assert ui["build"] == oa["build"]  # one image: building it for either gives the same
    assert "ui" in oa["build"]["args"]["EXTRAS"].split(",")
    assert ui["command"][0] == "ui"  # after the image's ENTRYPOINT, openanomaly
    assert ui["command"][ui["command"].index("--api-url") + 1] == f"http://openanomaly:{PORT}"
    assert "127.0.0.1:8501:8501" in ui["ports"]
    assert dict(bind_mounts(ui))["./openanomaly.yaml"] == ui["environment"]["OA_CONFIG"]

    grafana = bind_mounts(services["grafana"])
    assert ("./grafana/provisioning", "/etc/grafana/provisioning") in grafana
    dashboard = "/var/lib/grafana/dashboards/openanomaly.json"
    assert ("./grafana/openanomaly.json", dashboard) in grafana


def rule_glob() -> PurePosixPath:
    """vmalert's -rule= pattern in the single-node compose file (a path inside the container)."""
    flags = compose("docker-compose.yml")["services"]["vmalert"]["command"]
    (rule,) = [f.split("=", 1)[1] for f in flags if f.startswith("-rule=")]
    return PurePosixPath(rule)


def test_vmalert_reads_every_rule_file_and_nothing_else() -> None:
    """deploy/rules also holds promtool tests, which vmalert refuses: its -rule= pattern must
    match the rule files (top-level `groups`) only."""
    pattern = rule_glob().name
    files = sorted(f for f in (DEPLOY / "rules").iterdir() if f.suffix in (".yml", ".yaml"))
    matched = [f for f in files if PurePosixPath(f.name).match(pattern)]
    assert matched, f"-rule={rule_glob()} matches no file in deploy/rules"
    for file in files:
        document = yaml.safe_load(file.read_text())
        is_rules = isinstance(document, dict) and "groups" in document
        problem = "vmalert does not read it" if is_rules else "not rules, but vmalert reads it"
        assert (file in matched) == is_rules, f"{file.name}: {problem}"


def test_vmalert_accepts_the_rule_files_it_is_given() -> None:
    binary = require_executable("vmalert", "victoria-metrics")
    rule = DEPLOY / "rules" / rule_glob().name
    result = subprocess.run(
        [binary, "-dryRun", f"-rule={rule}", "-loggerLevel=ERROR"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_bind_mount_of_the_compose_files_exists() -> None:
    for name in ("docker-compose.yml", "docker-compose.cluster.yml"):
        for service_name, service in compose(name)["services"].items():
            for source, _ in bind_mounts(service):
                assert (DEPLOY / source).exists(), f"{name}: {service_name} mounts {source}"


def test_the_dashboard_and_alerting_files_the_stack_mounts_are_there() -> None:
    """Rules, dashboard and Grafana provisioning come from their own change; the compose file
    mounts them at these paths."""
    for relative in DASHBOARD_FILES:
        path = DEPLOY / relative
        assert path.exists(), f"deploy/{relative} is missing (deploy/docker-compose.yml mounts it)"
        if path.is_dir():
            assert [*path.glob("*.yaml"), *path.glob("*.yml")], f"deploy/{relative} is empty"
    assert list((DEPLOY / "rules").glob("*.yml")), "vmalert reads -rule=/etc/rules/*.yml"
    json.loads((DEPLOY / "grafana" / "openanomaly.json").read_text())

    providers_dir = DEPLOY / "grafana" / "provisioning" / "dashboards"
    paths = []
    for file in [*providers_dir.glob("*.yaml"), *providers_dir.glob("*.yml")]:
        for provider in yaml.safe_load(file.read_text()).get("providers", []):
            paths.append(str(provider.get("options", {}).get("path", "")).rstrip("/"))
    dashboard = "/var/lib/grafana/dashboards/openanomaly.json"
    assert any(p and (dashboard == p or dashboard.startswith(p + "/")) for p in paths), paths

    sources_dir = DEPLOY / "grafana" / "provisioning" / "datasources"
    urls = []
    for file in [*sources_dir.glob("*.yaml"), *sources_dir.glob("*.yml")]:
        urls += [str(s.get("url", "")) for s in yaml.safe_load(file.read_text())["datasources"]]
    assert any("victoriametrics:8428" in url for url in urls), urls


def test_victoria_metrics_scrapes_openanomaly() -> None:
    scrape = yaml.safe_load((DEPLOY / "victoriametrics" / "scrape.yml").read_text())
    jobs = {job["job_name"]: job for job in scrape["scrape_configs"]}
    targets = [t for c in jobs["openanomaly"]["static_configs"] for t in c["targets"]]
    assert targets == [f"openanomaly:{PORT}"]  # the compose service and our port
    services = compose("docker-compose.yml")["services"]
    for job in jobs.values():
        for config in job["static_configs"]:
            for target in config["targets"]:
                host = target.rsplit(":", 1)[0]
                assert host == "localhost" or host in services, f"{target}: no such service"


def test_victoria_metrics_accepts_the_scrape_config() -> None:
    binary = require_executable("victoria-metrics", "victoria-metrics")
    config = DEPLOY / "victoriametrics" / "scrape.yml"
    result = subprocess.run(
        [binary, f"-promscrape.config={config}", "-promscrape.config.dryRun"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_cluster_compose_file_builds_the_image_with_the_cluster_extras() -> None:
    anchor = compose("docker-compose.cluster.yml")["x-openanomaly"]
    assert (DEPLOY / anchor["build"]["context"] / "Dockerfile").is_file()
    extras = set(anchor["build"]["args"]["EXTRAS"].split(","))
    assert extras == {"celery", "postgres", "s3"}
    extras_known = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras <= set(extras_known["optional-dependencies"])
    # Its commands start with `openanomaly`: the image's ENTRYPOINT must not come first.
    services = compose("docker-compose.cluster.yml")["services"]
    assert services["scheduler"]["command"][0] == "openanomaly"
    assert anchor["entrypoint"] == []


def test_the_single_node_settings_are_valid_and_match_the_compose_file() -> None:
    settings = load_settings(DEPLOY / "openanomaly.yaml", env={}).settings
    services = compose("docker-compose.yml")["services"]
    assert settings.tsdb.url == "http://victoriametrics:8428"
    assert str(settings.storage.data_dir) == DATA_DIR
    assert str(settings.pipelines_dir) == PIPELINES_DIR
    assert settings.http.listen == f"0.0.0.0:{PORT}"
    assert settings.dispatcher.kind == "threads"
    mounted = dict(bind_mounts(services["openanomaly"]))
    assert mounted["./openanomaly.yaml"] == services["openanomaly"]["environment"]["OA_CONFIG"]
    assert mounted["../pipelines.d"] == PIPELINES_DIR
    # The image's environment says the same, so the file is also right outside the image.
    image = load_settings(DEPLOY / "openanomaly.yaml", env=dockerfile_env()).settings
    assert image == settings


# --- Helm chart -------------------------------------------------------------------------------


def chart_values() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def templates() -> dict[str, str]:
    files = sorted((CHART / "templates").iterdir())
    return {f.name: f.read_text() for f in files if f.is_file()}


def _strip_comments(text: str) -> str:
    return re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.DOTALL)


def test_the_chart_metadata_follows_the_project() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "openanomaly"
    assert chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"] == project["version"]  # the default image tag


def test_every_values_path_the_templates_use_is_in_values_yaml() -> None:
    values = chart_values()
    used = set()
    for name, text in templates().items():
        for path in re.findall(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", _strip_comments(text)):
            used.add((name, path))
    assert used
    for name, path in sorted(used):
        node: Any = values
        for key in path.strip(".").split("."):
            assert isinstance(node, dict), f"{name}: .Values{path} goes below a leaf"
            assert key in node, f"{name}: .Values{path} is not in values.yaml"
            node = node[key]


def test_the_templates_are_balanced_and_use_only_defined_helpers() -> None:
    files = templates()
    defined = set(re.findall(r'\{\{-?\s*define\s+"([^"]+)"', files["_helpers.tpl"]))
    assert {"openanomaly.fullname", "openanomaly.labels", "openanomaly.selectorLabels"} <= defined
    for name, raw in files.items():
        text = _strip_comments(raw)
        assert text.count("{{") == text.count("}}"), f"{name}: unbalanced {{{{ }}}}"
        actions = re.findall(r"\{\{-?\s*(\w+)", text)
        opened = sum(a in ("if", "range", "with", "define", "block") for a in actions)
        ended = actions.count("end")
        assert opened == ended, f"{name}: {opened} blocks opened, {ended} ended"
        for helper in re.findall(r'(?:include|template)\s+"([^"]+)"', text):
            assert helper in defined, f"{name}: {helper} is not defined in _helpers.tpl"
        if name.endswith(".yaml"):
            plain = "\n".join(line for line in text.splitlines() if "{{" not in line)
            assert re.search(r"^apiVersion: \S+$", plain, re.MULTILINE), f"{name}: no apiVersion"
            assert re.search(r"^kind: [A-Z]\w+$", plain, re.MULTILINE), f"{name}: no kind"


def test_the_chart_runs_the_image_as_its_user_with_probes_and_a_volume() -> None:
    values = chart_values()
    files = templates()
    assert values["podSecurityContext"]["runAsUser"] == UID
    assert values["podSecurityContext"]["runAsNonRoot"] is True
    assert values["securityContext"]["readOnlyRootFilesystem"] is True
    assert values["securityContext"]["allowPrivilegeEscalation"] is False
    assert values["terminationGracePeriodSeconds"] > 2 * SHUTDOWN_GRACE
    assert values["service"]["port"] == PORT
    pod = files["_helpers.tpl"]
    for needle in (
        "path: /healthz",
        "path: /readyz",
        f"containerPort: {PORT}",
        f"mountPath: {DATA_DIR}",
        "mountPath: /tmp",  # writable scratch space beside the read-only root
        f"mountPath: {PIPELINES_DIR}",
    ):
        assert needle in pod, needle
    statefulset = files["statefulset.yaml"]
    assert "kind: StatefulSet" in statefulset
    assert "replicas: 1" in statefulset  # light mode: one process owns the SQLite registry
    assert "volumeClaimTemplates:" in statefulset
    assert '"run" "--dispatcher" "celery"' in files["deployment-scheduler.yaml"]
    assert 'list "worker"' in files["deployment-worker.yaml"]
    assert values["cluster"]["scheduler"]["replicas"] == 2


def test_the_chart_settings_and_environment_are_valid_settings(tmp_path: Path) -> None:
    values = chart_values()
    pod = templates()["_helpers.tpl"]
    env = dict(re.findall(r"- name: (OA_\w+)\n\s+value: \"?([^\"\n]+)\"?", pod))
    assert env["OA_STORAGE__DATA_DIR"] == DATA_DIR
    assert env["OA_HTTP__LISTEN"] == f"0.0.0.0:{PORT}"
    assert env["OA_PIPELINES_DIR"] == PIPELINES_DIR
    config_file = tmp_path / "openanomaly.yaml"
    config_file.write_text(yaml.safe_dump(values["settings"]))
    mount = re.search(r"- name: settings\n\s+mountPath: (\S+)", pod)
    assert mount
    assert env.pop("OA_CONFIG") == f"{mount.group(1)}/openanomaly.yaml"
    settings = load_settings(config_file, env=env).settings
    assert settings.http.port == PORT
    assert str(settings.storage.data_dir) == DATA_DIR

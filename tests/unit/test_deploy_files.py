"""The deployment files we ship parse, and the settings they mount are valid settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from openanomaly.config.settings_loader import load_settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_the_cluster_compose_file_wires_what_cluster_mode_needs() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.cluster.yml").read_text())
    services = compose["services"]
    assert {"victoriametrics", "redis", "postgres", "scheduler", "worker"} <= set(services)
    assert services["scheduler"]["deploy"]["replicas"] == 2  # one leads, one stands by
    assert services["worker"]["command"][:2] == ["openanomaly", "worker"]
    for name in ("scheduler", "worker"):
        mounts = services[name]["volumes"]
        assert "artifacts:/var/lib/openanomaly/models" in mounts  # shared by every process
        host = mounts[0].split(":")[0]
        assert (DEPLOY / host).is_file(), f"{name} mounts {host}, which does not exist"


def test_the_cluster_settings_file_is_valid_cluster_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_PASSWORD", "s3cret")
    settings = load_settings(DEPLOY / "cluster" / "openanomaly.yaml").settings
    assert settings.dispatcher.kind == "celery"
    assert settings.storage.registry_url is not None
    assert settings.storage.registry_url.startswith("postgresql+psycopg://oa:s3cret@postgres/")
    assert settings.dispatcher.broker_url is not None
    assert settings.dispatcher.broker_url.get_secret_value() == "redis://redis:6379/0"

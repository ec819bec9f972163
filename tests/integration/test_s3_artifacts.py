"""Artifacts on S3 through s3fs, against a local S3 server (moto's, on loopback)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openanomaly.adapters.artifact_store import artifact_store
from openanomaly.errors import ArtifactCorrupt, ArtifactStoreUnavailable, ConfigError
from tests.conftest import require_module

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    require_module("s3fs", "the `s3` extra: uv sync --extra s3")
    require_module("moto", "the dev group: uv sync")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {
        "endpoint_url": f"http://{host}:{port}",
        "key": "test",
        "secret": "test",
        "client_kwargs": {"region_name": "us-east-1"},
    }
    import boto3

    boto3.client(
        "s3",
        endpoint_url=options["endpoint_url"],
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ).create_bucket(Bucket="models")
    yield options
    server.stop()


def test_put_get_delete_round_trip_with_checksums(s3: dict[str, Any]) -> None:
    store = artifact_store("s3://models/oa", s3)
    ref = store.put("cpu/20260101T000000-abc.bin", b"fitted model bytes")
    assert ref.uri == "s3://models/oa/cpu/20260101T000000-abc.bin"
    assert ref.size == 18
    assert store.get(ref) == b"fitted model bytes"
    tampered = type(ref)(ref.uri, "0" * 64, ref.size)
    with pytest.raises(ArtifactCorrupt, match="sha256"):
        store.get(tampered)
    store.delete(ref.uri)
    store.delete(ref.uri)  # deleting a missing one is not an error
    with pytest.raises(ArtifactCorrupt, match="missing"):
        store.get(ref)
    with pytest.raises(ValueError, match="must not have"):
        store.put("../escape.bin", b"x")
    with pytest.raises(ArtifactCorrupt, match="not in this store"):
        store.get(type(ref)("s3://elsewhere/x.bin", ref.sha256, ref.size))


def test_unreachable_object_storage_is_its_own_error(s3: dict[str, Any]) -> None:
    from openanomaly.local_tsdb import free_port

    dead = {**s3, "endpoint_url": f"http://127.0.0.1:{free_port()}", "config_kwargs": {
        "retries": {"max_attempts": 1}, "connect_timeout": 1}}  # fmt: skip
    store = artifact_store("s3://models/oa", dead)
    with pytest.raises(ArtifactStoreUnavailable, match=r"cannot write s3://models/oa/x\.bin"):
        store.put("x.bin", b"x")


def test_a_bucketless_url_is_a_config_error() -> None:
    require_module("s3fs", "the `s3` extra: uv sync --extra s3")
    with pytest.raises(ConfigError, match="needs a bucket"):
        artifact_store("s3:///models")

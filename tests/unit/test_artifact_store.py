"""LocalArtifactStore on real files, and the artifact_store(url) factory."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import time
from pathlib import Path

import pytest

from openanomaly.adapters.artifact_store import LocalArtifactStore, artifact_store
from openanomaly.errors import ArtifactCorrupt, ConfigError, MissingExtra
from openanomaly.ports import ArtifactRef, ArtifactStore

BLOB = bytes(range(256)) * 40


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "models")


def test_put_get_roundtrip_and_ref(store: LocalArtifactStore, tmp_path: Path) -> None:
    port: ArtifactStore = store
    ref = port.put("cpu/v1-0123456789ab.bin", BLOB)
    path = tmp_path / "models" / "cpu" / "v1-0123456789ab.bin"
    assert ref == ArtifactRef(
        uri=f"file://{path}", sha256=hashlib.sha256(BLOB).hexdigest(), size=len(BLOB)
    )
    assert path.read_bytes() == BLOB
    assert port.get(ref) == BLOB
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_put_replaces_an_existing_key(store: LocalArtifactStore) -> None:
    old = store.put("p/v1.bin", b"old")
    new = store.put("p/v1.bin", b"new bytes")
    assert store.get(new) == b"new bytes"
    with pytest.raises(ArtifactCorrupt):
        store.get(old)


def test_keys_with_odd_characters_roundtrip_through_the_uri(store: LocalArtifactStore) -> None:
    ref = store.put("my pipeline %1/v2-ab.bin", b"x")
    assert "%20" in ref.uri
    assert store.get(ref) == b"x"
    store.delete(ref.uri)
    with pytest.raises(ArtifactCorrupt, match="missing"):
        store.get(ref)


def test_a_flipped_byte_is_detected(store: LocalArtifactStore) -> None:
    ref = store.put("p/v1.bin", BLOB)
    path = Path(ref.uri.removeprefix("file://"))
    damaged = bytearray(path.read_bytes())
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    with pytest.raises(ArtifactCorrupt) as caught:
        store.get(ref)
    message = str(caught.value)
    assert ref.uri in message
    assert ref.sha256 in message
    assert hashlib.sha256(damaged).hexdigest() in message


def test_a_truncated_file_is_detected(store: LocalArtifactStore) -> None:
    ref = store.put("p/v1.bin", BLOB)
    path = Path(ref.uri.removeprefix("file://"))
    path.write_bytes(BLOB[:100])
    with pytest.raises(ArtifactCorrupt, match=rf"has 100 bytes, expected {len(BLOB)}"):
        store.get(ref)


def test_a_missing_file_is_detected(store: LocalArtifactStore) -> None:
    ref = store.put("p/v1.bin", BLOB)
    Path(ref.uri.removeprefix("file://")).unlink()
    with pytest.raises(ArtifactCorrupt, match=r"missing") as caught:
        store.get(ref)
    assert ref.uri in str(caught.value)


def test_a_ref_from_elsewhere_is_corrupt_not_a_crash(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    elsewhere = LocalArtifactStore(tmp_path / "other").put("p/v1.bin", b"x")
    with pytest.raises(ArtifactCorrupt, match="outside the store root"):
        store.get(elsewhere)
    with pytest.raises(ValueError, match="outside the store root"):
        store.delete(elsewhere.uri)
    assert Path(elsewhere.uri.removeprefix("file://")).exists()


@pytest.mark.parametrize(
    "key",
    [
        "../escape.bin",
        "p/../../escape.bin",
        "/etc/passwd",
        "",
        "p//v1.bin",
        "p/./v1.bin",
        "p/",
        "a\\..\\b",
        "p/v1.bin.tmp",
    ],
)
def test_keys_that_could_escape_are_refused(
    store: LocalArtifactStore, tmp_path: Path, key: str
) -> None:
    with pytest.raises(ValueError, match="artifact key"):
        store.put(key, b"x")
    assert not (tmp_path / "escape.bin").exists()


def test_a_symlink_out_of_the_root_is_refused(store: LocalArtifactStore, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (store.root / "link").symlink_to(outside)
    with pytest.raises(ValueError, match="escapes the store root"):
        store.put("link/v1.bin", b"x")
    assert list(outside.iterdir()) == []


def test_delete_is_idempotent(store: LocalArtifactStore) -> None:
    ref = store.put("p/v1.bin", b"x")
    keep = store.put("p/v2.bin", b"y")
    store.delete(ref.uri)
    store.delete(ref.uri)
    assert not Path(ref.uri.removeprefix("file://")).exists()
    assert store.get(keep) == b"y"


def test_stale_temp_files_are_cleaned_on_open(tmp_path: Path) -> None:
    root = tmp_path / "models"
    store = LocalArtifactStore(root)
    ref = store.put("p/v1.bin", b"x")
    stale = root / "p" / ".v2.bin.123.abc.tmp"
    fresh = root / "p" / ".v3.bin.456.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written right now")
    two_hours_ago = time.time() - 7200
    os.utime(stale, (two_hours_ago, two_hours_ago))
    LocalArtifactStore(root)
    assert not stale.exists()
    assert fresh.exists()  # might belong to a live writer in another process
    assert store.get(ref) == b"x"


def test_a_failed_write_leaves_neither_temp_nor_partial_file(
    store: LocalArtifactStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = store.put("p/v1.bin", b"old")

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="No space"):
        store.put("p/v1.bin", b"new")
    monkeypatch.undo()
    assert store.get(old) == b"old"
    assert sorted(p.name for p in (store.root / "p").iterdir()) == ["v1.bin"]


def test_factory_file_urls(tmp_path: Path) -> None:
    store = artifact_store(f"file://{tmp_path / 'm'}")
    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "m"
    assert (tmp_path / "m").is_dir()
    for bad in ("file://relative/models", "file:models", "ftp://host/x", "/just/a/path"):
        with pytest.raises(ConfigError, match=r"storage\.artifacts_url"):
            artifact_store(bad)


def test_factory_s3_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "s3fs" else real(name, *a)
    )
    with pytest.raises(MissingExtra, match=r"'s3' extra"):
        artifact_store("s3://bucket/models")

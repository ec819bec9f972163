"""LocalArtifactStore: model artifacts as files under one root directory.

A put writes a temp file next to its destination, fsyncs it, renames it over the destination and
fsyncs the directory, so after a crash a key holds the old bytes or the new ones, never a mix.
Leftover temp files (a crash between write and rename) are removed when the store is opened,
once they are old enough that no other live process can still be writing them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from openanomaly.adapters.artifact_store.keys import check_key
from openanomaly.adapters.fsutil import fsync_directory
from openanomaly.errors import ArtifactCorrupt
from openanomaly.ports import ArtifactRef

log = logging.getLogger(__name__)
TMP_SUFFIX = ".tmp"
STALE_TMP_SECONDS = 3600.0


class LocalArtifactStore:
    """ArtifactStore on a local or shared (NFS, ...) filesystem; uris are `file:///abs/path`."""

    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        self.root.mkdir(parents=True, exist_ok=True)
        self._clean_stale_tmp(time.time())

    def _clean_stale_tmp(self, now: float) -> None:
        for path in self.root.rglob(f"*{TMP_SUFFIX}"):
            try:
                if path.is_file() and now - path.stat().st_mtime > STALE_TMP_SECONDS:
                    path.unlink()
                    log.info("removed a leftover partial artifact %s", path)
            except FileNotFoundError:  # another process cleaned it first
                continue

    def path_for(self, key: str) -> Path:
        """The file for `key`; ValueError for keys that are empty, absolute or escape the root."""
        parts = check_key(key)
        if key.endswith(TMP_SUFFIX):  # the names this store gives its partial writes
            raise ValueError(f"artifact key {key!r} must not end in {TMP_SUFFIX}")
        path = self.root.joinpath(*parts)
        # Symlinks inside the root could still lead out of it; resolve to be sure.
        if not path.resolve().is_relative_to(self.root.resolve()):
            raise ValueError(f"artifact key {key!r} escapes the store root {self.root}")
        return path

    def put(self, key: str, data: bytes) -> ArtifactRef:
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Unique per process and call, so concurrent writers of one key never share a temp file.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}{TMP_SUFFIX}")
        try:
            with tmp.open("xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        fsync_directory(path.parent)
        return ArtifactRef(
            uri=path.as_uri(), sha256=hashlib.sha256(data).hexdigest(), size=len(data)
        )

    def get(self, ref: ArtifactRef) -> bytes:
        try:
            path = self._path_of_uri(ref.uri)
        except ValueError as exc:  # e.g. data_dir moved: the daemon retrains, never crashes
            raise ArtifactCorrupt(
                f"artifact {ref.uri} cannot be read from this store: {exc}"
            ) from None
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ArtifactCorrupt(f"artifact {ref.uri} is missing") from None
        except OSError as exc:
            raise ArtifactCorrupt(f"artifact {ref.uri} cannot be read: {exc}") from None
        if len(data) != ref.size:
            raise ArtifactCorrupt(
                f"artifact {ref.uri} has {len(data)} bytes, expected {ref.size} (truncated?)"
            )
        digest = hashlib.sha256(data).hexdigest()
        if digest != ref.sha256:
            raise ArtifactCorrupt(
                f"artifact {ref.uri} has sha256 {digest}, expected {ref.sha256} (altered?)"
            )
        return data

    def delete(self, uri: str) -> None:
        """Idempotent; a uri outside this store raises ValueError (we never delete elsewhere)."""
        path = self._path_of_uri(uri)
        path.unlink(missing_ok=True)
        fsync_directory(path.parent)

    def _path_of_uri(self, uri: str) -> Path:
        """The file behind a `file://` uri of this store; ValueError for anything else."""
        parts = urlsplit(uri)
        if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
            raise ValueError(f"not a local artifact uri: {uri!r}")
        path = Path(unquote(parts.path))
        try:
            key = path.relative_to(self.root).as_posix()
        except ValueError:
            raise ValueError(
                f"artifact uri {uri!r} is outside the store root {self.root}"
            ) from None
        return self.path_for(key)

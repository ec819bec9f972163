"""Artifacts on object storage (`s3://bucket/prefix`, with the `s3` extra) through fsspec.

An object PUT is atomic (readers see the whole object or none), so no temp-and-rename dance is
needed; the sha256 recorded in the registry is checked on every read, as for local files.
Connection settings (endpoint, credentials, region) come from `storage.artifacts_options`, or
the usual AWS environment variables and files.
"""

from __future__ import annotations

import hashlib
from typing import Any

from openanomaly.adapters.artifact_store.keys import check_key
from openanomaly.errors import ArtifactCorrupt, ArtifactStoreUnavailable
from openanomaly.ports import ArtifactRef


class FsspecArtifactStore:
    def __init__(self, url: str, options: dict[str, Any] | None = None) -> None:
        from fsspec.core import url_to_fs

        self.url = url.rstrip("/")
        self._fs, self._root = url_to_fs(self.url, **(options or {}))
        self._scheme = self.url.split("://", 1)[0]

    def _path(self, key: str) -> str:
        return f"{self._root.rstrip('/')}/{'/'.join(check_key(key))}"

    def _path_of(self, uri: str) -> str:
        prefix = f"{self.url}/"
        if not uri.startswith(prefix):
            raise ArtifactCorrupt(f"{uri} is not in this store ({self.url})")
        return self._path(uri[len(prefix) :])

    def put(self, key: str, data: bytes) -> ArtifactRef:
        path = self._path(key)
        try:
            self._fs.pipe_file(path, data)
        except Exception as exc:  # botocore/aiohttp errors: name the store, keep the reason
            raise ArtifactStoreUnavailable(f"cannot write {self.url}/{key}: {exc}") from None
        return ArtifactRef(f"{self.url}/{key}", hashlib.sha256(data).hexdigest(), len(data))

    def get(self, ref: ArtifactRef) -> bytes:
        path = self._path_of(ref.uri)
        try:
            data = bytes(self._fs.cat_file(path))
        except FileNotFoundError:
            raise ArtifactCorrupt(f"{ref.uri} is missing") from None
        except Exception as exc:
            raise ArtifactStoreUnavailable(f"cannot read {ref.uri}: {exc}") from None
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != ref.size or digest != ref.sha256:
            raise ArtifactCorrupt(
                f"{ref.uri}: expected {ref.size} bytes with sha256 {ref.sha256[:12]}..., "
                f"found {len(data)} bytes with sha256 {digest[:12]}..."
            )
        return data

    def delete(self, uri: str) -> None:
        path = self._path_of(uri)
        try:
            self._fs.rm_file(path)
        except FileNotFoundError:
            return
        except Exception as exc:
            raise ArtifactStoreUnavailable(f"cannot delete {uri}: {exc}") from None

"""Artifact stores: where fitted models' bytes live. `artifact_store(url)` picks one by scheme."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from openanomaly.adapters.artifact_store.local import LocalArtifactStore
from openanomaly.errors import ConfigError, MissingExtra, Problem
from openanomaly.ports import ArtifactStore

__all__ = ["LocalArtifactStore", "artifact_store"]


def artifact_store(url: str, options: dict[str, Any] | None = None) -> ArtifactStore:
    """The store for `storage.effective_artifacts_url`.

    `file:///abs/path` gives a LocalArtifactStore (creating the directory); `s3://bucket/prefix`
    an FsspecArtifactStore with `options` (endpoint_url, key, secret, ...), or MissingExtra
    without the `s3` extra; anything else, relative file paths included, raises ConfigError.
    """
    parts = urlsplit(url)
    if parts.scheme == "file":
        path = Path(unquote(parts.path))
        if parts.netloc not in ("", "localhost") or not path.is_absolute():
            raise _problem(f"{url!r} must be an absolute file URL like file:///var/lib/oa/models")
        return LocalArtifactStore(path)
    if parts.scheme == "s3":
        if importlib.util.find_spec("s3fs") is None:
            raise MissingExtra("s3:// artifact storage", "s3", "s3fs")
        if not parts.netloc:
            raise _problem(f"{url!r} needs a bucket: s3://bucket/prefix")
        from openanomaly.adapters.artifact_store.fsspec_store import FsspecArtifactStore

        return FsspecArtifactStore(url, options)
    raise _problem(f"unsupported artifact URL {url!r}: use file:///absolute/path")


def _problem(reason: str) -> ConfigError:
    return ConfigError([Problem("storage.artifacts_url", 0, "", reason)])

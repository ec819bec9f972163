"""Artifact keys: relative, `/`-separated names, the same rules for every store."""

from __future__ import annotations


def check_key(key: str) -> list[str]:
    """The parts of a relative, `/`-separated artifact key; ValueError for any other."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\\" in key or "\0" in key:
        raise ValueError(f"artifact key {key!r} must be a relative path like 'pipe/v1-ab.bin'")
    if any(part in ("..", ".", "") for part in parts):
        raise ValueError(f"artifact key {key!r} must not have '..', '.' or empty parts")
    return parts

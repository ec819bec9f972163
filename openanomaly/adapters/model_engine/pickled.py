"""Pickled model artifacts shared by the engines: a format number, the engine's name and the
library versions travel with the model, and anything else on load is IncompatibleArtifact
(the daemon retrains) rather than a crash or a silently wrong model."""

from __future__ import annotations

import pickle
from typing import Any, TypeVar

from openanomaly.errors import IncompatibleArtifact

T = TypeVar("T")
FORMAT = 1


def dump_model(engine: str, fitted: Any) -> bytes:
    return pickle.dumps(
        {"format": FORMAT, "engine": engine, "fitted": fitted}, protocol=pickle.HIGHEST_PROTOCOL
    )


def load_model(blob: bytes, engine: str, kind: type[T], versions: dict[str, str]) -> T:
    """Only artifacts the artifact store has checksummed reach here: unpickling runs code."""
    try:
        payload = pickle.loads(blob)  # noqa: S301 - checksummed by the artifact store
    except Exception as exc:
        raise IncompatibleArtifact(f"cannot load {engine} artifact: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise IncompatibleArtifact(f"not a {engine} artifact of format {FORMAT}")
    fitted = payload.get("fitted")
    if payload.get("engine") != engine or not isinstance(fitted, kind):
        raise IncompatibleArtifact(f"the artifact holds a {payload.get('engine')} model")
    saved = getattr(fitted, "versions", None)
    if saved != versions:
        raise IncompatibleArtifact(f"fitted with {saved}, running {versions}: retrain")
    return fitted

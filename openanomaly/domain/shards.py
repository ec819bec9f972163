"""Shards: how a large pipeline's series are split between workers (cluster mode).

A series' shard is a hash of its `unique_id` (the canonical label text) modulo the shard count,
so it is the same in every process and on every run, and the count comes from the model's
series count, so it changes only with a retrain: a worker that scored shard 3 last cycle keeps
the right model and context cached for it. blake2b, not `hash()`: Python salts str hashes per
process.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from hashlib import blake2b

import numpy as np
import numpy.typing as npt


def shard_count(series: int, per_shard: int) -> int:
    """Shards for `series` series at most `per_shard` each (at least one)."""
    if per_shard < 1:
        raise ValueError(f"per_shard must be >= 1, got {per_shard}")
    return max(1, math.ceil(series / per_shard))


def shard_of(unique_id: str, shards: int) -> int:
    if shards <= 1:
        return 0
    digest = blake2b(unique_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def in_shard(ids: Iterable[str], shard: int, shards: int) -> npt.NDArray[np.bool_]:
    """For each id, whether it belongs to `shard` of `shards`."""
    return np.fromiter((shard_of(uid, shards) == shard for uid in ids), dtype=bool)

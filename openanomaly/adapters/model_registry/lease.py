"""SqlLease: leader election on a row of the registry's database (cluster mode's HA).

Several `openanomaly run` instances share one registry; the one holding the `scheduler` lease
schedules, the others wait. The holder renews well within the TTL; when it dies, its lease
expires and a standby takes it over. Every change of holder increments the fencing token, and
the leader's watermark commits are conditional on it (`SqlRegistry.set_watermark(fence=...)`),
so a leader that was paused past its TTL (GC, a frozen VM) cannot move a watermark after its
successor has.

Time is the database's clock, not the instances': schedulers on machines with skewed clocks
still agree on when a lease expires.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import timedelta

from sqlalchemy import Connection, insert, select, text, update

from openanomaly.adapters.model_registry.schema import LEASES, SCHEDULER_LEASE, now, to_us
from openanomaly.adapters.model_registry.sql import SqlRegistry
from openanomaly.domain.jobs import LeaseState

# Microseconds since the epoch on the database server, per dialect.
_NOW_US = {
    "postgresql": "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)",
    "sqlite": "SELECT CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)",
}


def holder_id() -> str:
    """Unique per process, readable in logs: host, pid and a random suffix (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SqlLease:
    """The `LeaderLease` port on the registry's database."""

    def __init__(
        self,
        registry: SqlRegistry,
        ttl: timedelta,
        *,
        name: str = SCHEDULER_LEASE,
        holder: str | None = None,
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError("a lease TTL must be positive")
        self.registry = registry
        self.ttl_us = ttl // timedelta(microseconds=1)
        self.name = name
        self.holder = holder or holder_id()
        self.fence = 0  # ours while we lead; 0 when we do not

    def _now_us(self, conn: Connection) -> int:
        sql = _NOW_US.get(conn.dialect.name)
        if sql is None:  # another SQLAlchemy backend: fall back to our own clock
            return to_us(now())
        return int(conn.execute(text(sql)).scalar_one())

    def acquire(self) -> LeaseState:
        """Take or renew the lease; `leader` says whether we hold it afterwards."""

        def attempt(conn: Connection) -> LeaseState:
            now_us = self._now_us(conn)
            expires = now_us + self.ttl_us
            query = select(LEASES).where(LEASES.c.name == self.name)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                conn.execute(
                    insert(LEASES).values(
                        name=self.name, holder=self.holder, fence=1, expires=expires
                    )
                )
                return LeaseState(True, self.holder, 1)
            holder, fence, until = row.holder, int(row.fence), int(row.expires)
            ours = holder == self.holder and fence == self.fence and until > now_us
            if not ours and until > now_us:
                return LeaseState(False, holder, fence)
            new_fence = fence if ours else fence + 1
            conn.execute(
                update(LEASES)
                .where(LEASES.c.name == self.name, LEASES.c.fence == fence)
                .values(holder=self.holder, fence=new_fence, expires=expires)
            )
            return LeaseState(True, self.holder, new_fence)

        state: LeaseState = self.registry._retrying(f"taking the {self.name!r} lease", attempt)
        self.fence = state.fence if state.leader else 0
        return state

    def release(self) -> None:
        """Give the lease up (on shutdown) so a standby takes over at once, not after the TTL."""
        if not self.fence:
            return
        query = (
            update(LEASES)
            .where(
                LEASES.c.name == self.name,
                LEASES.c.holder == self.holder,
                LEASES.c.fence == self.fence,
            )
            .values(expires=0)
        )
        with (
            self.registry._guard(f"releasing the {self.name!r} lease"),
            self.registry._write() as c,
        ):
            c.execute(query)
        self.fence = 0

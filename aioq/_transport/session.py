"""One worker's (or scheduler's) own connection to Redis, and everything it does
there beyond the streams: server checks, scripts, schedules, the worker registry.

``RedisBroker.session()`` makes one; it does no I/O until used and is closed
with ``aclose()``. The runtime sees it as a ``WorkerBroker`` (broker.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import registry, schedules
from .connection import (
    check_server_version,
    connect,
    eviction_policy,
    wait_until_reachable,
)
from .leases import LeaseRenewer, Registration
from .scripts import SCRIPTS
from .streams import Streams

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .keys import Keyspace
    from .types import Fired, ScheduleState


class Session(Streams):
    """``Streams`` on a connection of its own, plus the worker's other Redis work."""

    def __init__(
        self,
        url: str,
        keys: Keyspace,
        options: dict[str, Any],
        *,
        batch_records: bool = True,
        events_maxlen: int = 0,
    ) -> None:
        super().__init__(
            connect(url, **options), keys, batch_records=batch_records, events_maxlen=events_maxlen
        )
        self.url = url
        self._options = options

    # -- start and stop -----------------------------------------------------------

    async def wait_until_reachable(self, timeout: float) -> None:
        """PING until Redis answers (``BrokerUnavailable`` after ``timeout`` s unreachable)."""
        await wait_until_reachable(self.redis, self.url, timeout)

    async def check_server(self) -> None:
        """Refuse a Redis older than 7.0 (``BrokerUnavailable``)."""
        await check_server_version(self.redis, self.url)

    async def eviction_policy(self) -> str | None:
        """Redis' ``maxmemory-policy`` (None when it cannot be read)."""
        return await eviction_policy(self.redis)

    async def load_scripts(self) -> None:
        await SCRIPTS.load_all(self.redis)

    async def aclose(self) -> None:
        await self.redis.aclose()

    def lease_renewer(self, worker_id: str, stale_after: float, every: float) -> LeaseRenewer:
        """The heartbeat thread's own synchronous connection, which also writes
        this worker's registry entry at most every ``every`` seconds."""
        return LeaseRenewer(
            self.url,
            self._options,
            worker_id,
            stale_after,
            Registration(self.keys, worker_id, every),
        )

    # -- the worker registry ------------------------------------------------------

    async def prune_workers(self) -> None:
        """Forget workers whose registry entry expired (killed ones)."""
        await registry.prune(self.redis, self.keys)

    async def forget_worker(self, worker_id: str) -> None:
        """A worker stops cleanly: its registry entry goes at once."""
        await registry.forget_worker(self.redis, self.keys, worker_id)

    # -- periodic schedules -------------------------------------------------------

    async def redis_time(self) -> int:
        """The Redis server's clock (TIME), in ms since the epoch."""
        return await schedules.redis_time(self.redis)

    async def schedule_states(
        self, schedules_: Sequence[tuple[str, str]]
    ) -> list[ScheduleState | None]:
        """What each (queue, schedule name) fired last, and whether it is paused;
        None: never fired nor paused."""
        return await schedules.states(self.redis, self.keys, schedules_)

    async def schedule_definitions(self) -> dict[str, bytes]:
        """The schedules added at run time (``app.schedules.add``): name → definition."""
        return await schedules.definitions(self.redis, self.keys)

    async def fire(
        self,
        queue: str,
        level: int,
        name: str,
        tick_ms: int,
        job_id: str,
        payload: bytes,
        grace_ms: int,
    ) -> Fired:
        """Send a schedule's tick once across every scheduler (tick.lua)."""
        return await schedules.fire(
            self.redis, self.keys, queue, level, name, tick_ms, job_id, payload, grace_ms
        )

    async def record_tick(self, job_id: str, task: str, queue: str, ttl_ms: int) -> None:
        """Give a tick's job its ``queued`` record (create-if-absent)."""
        await schedules.record(self.redis, self.keys, job_id, task, queue, ttl_ms)

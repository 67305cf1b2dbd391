"""The broker: the one seam between aioq and Redis.

Everything above ``_transport/`` reaches Redis through one of two typed
interfaces, with the named request and reply types of ``types.py``:

- ``Broker``, what an ``App`` holds (``app.broker``): sending, awaiting,
  aborting, progress, dead letters, the read model (status, jobs, purge), and
  ``session()`` for a worker or scheduler;
- ``WorkerBroker``, a worker's (or scheduler's) own connection: reading,
  starting, completing, retrying, dead-lettering, limits, leases, recovery,
  workflow follow-ups, schedules and the worker registry.

``RedisBroker`` / ``Session`` implement them on Redis; ``_worker/inline.py``'s
``InlineBroker`` implements the sending side in memory (``app.inline()``).
Nothing outside ``_transport/`` builds a key, sends a command or unpacks a
script's reply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from . import events, registry, schedules
from .client import Client
from .connection import broker_errors, parse_url
from .session import Session

if TYPE_CHECKING:
    import asyncio
    from collections.abc import AsyncIterator, Sequence

    from .._core.event import Note
    from .._core.options import When
    from .._core.status import JobSummary, QueueStatus, WorkerStatus
    from .inspect import Found
    from .keys import Keyspace
    from .leases import LeaseRenewer
    from .types import (
        Aborted,
        Admission,
        Admit,
        Claimed,
        Completion,
        Done,
        Entry,
        Finish,
        Fired,
        NewJob,
        Renewed,
        ScheduleState,
        Start,
        Wrote,
    )

__all__ = ["Broker", "DeadRow", "EventBatch", "RedisBroker", "WorkerBroker"]

DeadRow = tuple[bytes, dict[bytes, bytes]]
"""One dead-letter stream entry: (entry id, fields)."""
EventBatch = list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]
"""Events read: per queue, its (entry id, fields) in order."""


class Broker(Protocol):
    """What the user API (``App``, ``Task``, ``Job``, workflows, dead letters,
    status) does with Redis."""

    url: str

    # sending
    async def enqueue(self, job: NewJob) -> None: ...
    async def enqueue_delayed(self, job: NewJob, when: When) -> None: ...
    async def enqueue_unique(self, job: NewJob, when: When | None, hold_ms: int) -> str: ...
    async def enqueue_many(self, jobs: Sequence[NewJob]) -> None: ...

    # one job
    async def wait_outcome(self, job_id: str, timeout: float | None) -> bytes: ...
    async def abort(
        self, job_id: str, outcome: bytes, now_ms: int, ttl_ms: int
    ) -> Aborted | None: ...
    async def unlock(self, queue: str, lock: str, job_id: str, keep_ms: int) -> bool: ...
    async def expire_record(self, job_id: str, ttl_ms: int) -> None: ...
    async def report_progress(self, job_id: str, payload: bytes) -> None: ...
    def watch(self, job_id: str) -> AsyncIterator[tuple[str, Any]]: ...
    async def job_state(self, job_id: str) -> bytes | None: ...
    async def job_record(self, job_id: str) -> dict[bytes, bytes]: ...

    # dead letters
    async def dead_queues(self) -> list[str]: ...
    async def read_dead(
        self, queue: str, limit: int | None, start: bytes | str = "-"
    ) -> list[DeadRow]: ...
    async def requeue_jobs(self, jobs: Sequence[tuple[str, str, str]], ttl_ms: int) -> None: ...
    async def redrive(self, queue: str, ids: Sequence[bytes | str]) -> int: ...
    async def purge_dead(self, queue: str) -> int: ...

    # the read model
    async def queue_status(self, queues: Sequence[str]) -> tuple[list[QueueStatus], int]: ...
    async def live_workers(self) -> list[WorkerStatus]: ...
    async def list_jobs(
        self, state: str, queues: Sequence[str], limit: int
    ) -> list[JobSummary]: ...
    async def purge_ready(self, queue: str) -> list[tuple[str | None, str]]: ...
    async def find_message(self, queue: str, job_id: str) -> Found | None: ...
    async def redis_time(self) -> int: ...

    # lifecycle events (``App.events()``, ``Job.abort()``)
    async def write_event(self, queue: str, note: Note, maxlen: int, worker: str = "") -> None: ...
    async def read_events(
        self, after: dict[str, str], count: int, block_ms: int | None
    ) -> EventBatch: ...
    async def event_queues(self) -> list[str]: ...

    # schedules at run time (``app.schedules``)
    async def schedule_states(
        self, schedules_: Sequence[tuple[str, str]]
    ) -> list[ScheduleState | None]: ...
    async def pause_schedule(self, queue: str, name: str, resume: bool) -> bool: ...
    async def schedule_definitions(self) -> dict[str, bytes]: ...
    async def put_schedule(self, name: str, definition: bytes) -> None: ...
    async def forget_schedule(self, name: str) -> bool: ...

    # lifecycle
    def session(
        self, *, batch_records: bool | None = None, events_maxlen: int = 0
    ) -> WorkerBroker: ...
    async def ping(self) -> None: ...
    async def aclose(self) -> None: ...
    def forget(self, loop: asyncio.AbstractEventLoop) -> object: ...


class WorkerBroker(Protocol):
    """What a worker (and a scheduler) does with Redis, on its own connection."""

    url: str
    events_maxlen: int
    """Cap of each queue's lifecycle event stream; 0: this session writes no events."""

    # start and stop
    async def wait_until_reachable(self, timeout: float) -> None: ...
    async def check_server(self) -> None: ...
    async def eviction_policy(self) -> str | None: ...
    async def load_scripts(self) -> None: ...
    async def ensure_group(self, queue: str) -> None: ...
    async def ensure_groups(self, queues: Sequence[str], chunk: int = 100) -> set[str]: ...
    def lease_renewer(self, worker_id: str, stale_after: float, every: float) -> LeaseRenewer: ...
    async def prune_workers(self) -> None: ...
    async def forget_worker(self, worker_id: str) -> None: ...
    async def aclose(self) -> None: ...

    # reading
    def level_stream(self, queue: str, level: int) -> str: ...
    def one_read(self, streams: Sequence[str]) -> bool: ...
    async def backlog(self, queues: Sequence[str]) -> int: ...
    async def fetch(
        self, consumer: str, queues: Sequence[str], count: int, ascending: bool
    ) -> tuple[list[Entry], dict[str, bytes]]: ...
    async def wait(self, after: dict[str, bytes], block_ms: int) -> None: ...
    async def read_blocking(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, block_ms: int
    ) -> list[Entry]: ...
    async def pump(self, queue: str, limit: int) -> tuple[int, int]: ...

    # many queues (``_worker/reader.py``, ``pump.py``, ``recovery.py``)
    async def fetch_streams(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, ascending: bool
    ) -> tuple[list[Entry], dict[str, bytes]]: ...
    async def peek(self, marks: dict[str, bytes], block_ms: int | None = None) -> list[str]: ...
    async def existing(self, keys: Sequence[str], chunk: int = 500) -> list[str]: ...
    async def due_queues(self, limit: int, offset: int) -> tuple[int, int, list[str]]: ...
    async def pump_hinted(self, queues: Sequence[str], held_ms: int, limit: int) -> list[int]: ...
    async def with_delayed(self, queues: Sequence[str]) -> list[str]: ...
    async def hint_due(self, queue: str, due_ms: int) -> None: ...
    async def pending_summaries(
        self, streams: Sequence[str], chunk: int = 1000
    ) -> dict[str, dict[str, int]]: ...

    # one message's life
    async def start(self, worker: str, started_ms: int, starts: Sequence[Start]) -> list[Any]: ...
    async def admit(self, requests: Sequence[Admit]) -> list[Admission | Exception]: ...
    async def running_slots(
        self, slots: Sequence[tuple[str, str, int]], lease_ms: int | None
    ) -> list[str]: ...
    async def complete(
        self, worker: str, items: Sequence[Completion]
    ) -> list[Done | Exception]: ...
    async def write_events(self, worker: str, notes: Sequence[tuple[str, Note]]) -> None: ...
    async def ack(self, worker: str, entries: Sequence[Entry]) -> dict[tuple[str, bytes], bool]: ...
    async def write_outcome(self, worker: str, finish: Finish) -> tuple[Wrote, bytes | None]: ...
    async def mark_retrying(
        self, job_id: str, worker: str, attempt: int, error: bytes, delay_ms: int, ttl_ms: int
    ) -> Wrote: ...
    async def retry(
        self, entry: Entry, worker: str, payload: bytes, delay_ms: int, note: Note | None = None
    ) -> int | None: ...
    async def dead_letter(
        self,
        entry: Entry,
        worker: str,
        reason: str,
        maxlen: int,
        now_ms: int,
        note: Note | None = None,
    ) -> bool: ...
    async def progress(
        self,
        job_id: str,
        worker: str,
        attempt: int,
        report: bytes,
        event: tuple[Entry, Note] | None = None,
    ) -> bool: ...
    async def unlock(self, lock: str, job_id: str, keep_ms: int) -> None: ...
    def unique_lock(self, queue: str, lock: str) -> str: ...
    async def states(self, job_ids: Sequence[str]) -> list[bytes | None]: ...
    def abort_requests(self) -> AsyncIterator[str]: ...

    # workflows
    async def enqueue_once(
        self, queue: str, level: int, job_id: str, payload: bytes, ttl_ms: int
    ) -> bool: ...
    async def join(
        self, group_id: str, index: int, value: bytes, size: int, ttl_ms: int
    ) -> list[bytes] | None: ...
    async def end_group(self, group_id: str, ttl_ms: int) -> None: ...

    # leases and recovery
    async def renew(self, stream: str, consumer: str, ids: Sequence[bytes]) -> Renewed: ...
    async def claim(
        self, queue: str, consumer: str, min_idle_ms: int, cursors: list[bytes], count: int
    ) -> Claimed: ...
    async def reclaim(
        self, queue: str, level: int, consumer: str, ids: Sequence[bytes], min_idle_ms: int
    ) -> list[Entry]: ...
    async def forget_consumers_of(
        self, queues: Sequence[Sequence[str]], consumer: str, chunk: int = 1000
    ) -> None: ...
    async def forget_consumers(
        self, streams: Sequence[str], min_idle_ms: int, keep: str = "", only: str = ""
    ) -> list[str]: ...
    async def release(
        self, stream: str, consumer: str, ids: Sequence[bytes], idle_ms: int
    ) -> None: ...

    # schedules
    async def redis_time(self) -> int: ...
    async def schedule_states(
        self, schedules_: Sequence[tuple[str, str]]
    ) -> list[ScheduleState | None]: ...
    async def schedule_definitions(self) -> dict[str, bytes]: ...
    async def fire(
        self,
        queue: str,
        level: int,
        name: str,
        tick_ms: int,
        job_id: str,
        payload: bytes,
        grace_ms: int,
    ) -> Fired: ...
    async def record_tick(self, job_id: str, task: str, queue: str, ttl_ms: int) -> None: ...


class RedisBroker(Client):
    """The broker on Redis: ``Client`` (sending and awaiting, one Redis client per
    event loop) plus dead letters, the read model and worker sessions."""

    batch_records = True
    """Whether workers write job records a batch per script call (start_many,
    complete); job keys of a batch sit in different Cluster slots, so a Cluster
    broker turns it off: one start.lua / finish.lua per job, then the acks."""

    def __init__(self, url: str, keys: Keyspace, options: dict[str, Any], timeout: float) -> None:
        super().__init__(url, keys, options, timeout)
        self.cluster = parse_url(url).cluster
        """A Redis Cluster (``redis+cluster://``): the per-job record scripts, and
        reads and ordered writes grouped per slot."""
        if self.cluster:
            self.batch_records = False

    def session(self, *, batch_records: bool | None = None, events_maxlen: int = 0) -> Session:
        """A worker's or scheduler's own connection (no I/O until used); with
        ``events_maxlen`` > 0 its transitions write lifecycle events."""
        batch = self.batch_records if batch_records is None else batch_records
        if self.cluster and batch:
            raise ValueError("batch_records=True cannot work on Redis Cluster")
        return Session(
            self.url, self.keys, self._options, batch_records=batch, events_maxlen=events_maxlen
        )

    # -- dead letters -------------------------------------------------------------

    async def dead_queues(self) -> list[str]:
        """Queues that have a dead-letter stream."""
        from . import deadletters  # the read model: not a worker's (memory)

        return await deadletters.dead_queues(self.redis, self.keys)

    async def read_dead(
        self, queue: str, limit: int | None, start: bytes | str = "-"
    ) -> list[DeadRow]:
        from . import deadletters  # the read model: not a worker's (memory)

        return await deadletters.read(self.redis, self.keys, queue, limit, start)

    async def requeue_jobs(self, jobs: Sequence[tuple[str, str, str]], ttl_ms: int) -> None:
        """Fresh ``queued`` records for (job id, task, queue) about to be re-driven."""
        from . import deadletters  # the read model: not a worker's (memory)

        await deadletters.requeue_jobs(self.redis, self.keys, jobs, ttl_ms)

    async def redrive(self, queue: str, ids: Sequence[bytes | str]) -> int:
        from . import deadletters  # the read model: not a worker's (memory)

        return await deadletters.redrive(self.redis, self.keys, queue, ids)

    async def purge_dead(self, queue: str) -> int:
        from . import deadletters  # the read model: not a worker's (memory)

        return await deadletters.purge(self.redis, self.keys, queue)

    # -- the read model -----------------------------------------------------------

    async def queue_status(self, queues: Sequence[str]) -> tuple[list[QueueStatus], int]:
        from . import inspect  # the read model: not a worker's (memory)

        return await inspect.queue_status(self.redis, self.keys, queues)

    async def live_workers(self) -> list[WorkerStatus]:
        return await registry.live_workers(self.redis, self.keys)

    async def list_jobs(self, state: str, queues: Sequence[str], limit: int) -> list[JobSummary]:
        from . import inspect  # the read model: not a worker's (memory)

        return await inspect.list_jobs(self.redis, self.keys, state, queues, limit)

    async def purge_ready(self, queue: str) -> list[tuple[str | None, str]]:
        from . import inspect  # the read model: not a worker's (memory)

        return await inspect.purge_ready(self.redis, self.keys, queue)

    async def find_message(self, queue: str, job_id: str) -> Found | None:
        from . import inspect  # the read model: not a worker's (memory)

        return await inspect.find_message(self.redis, self.keys, queue, job_id)

    async def redis_time(self) -> int:
        """The Redis server's clock (TIME), in ms since the epoch."""
        async with broker_errors(self.url):
            return await schedules.redis_time(self.redis)

    # -- lifecycle events ---------------------------------------------------------

    async def write_event(self, queue: str, note: Note, maxlen: int, worker: str = "") -> None:
        """Write one lifecycle event to ``queue``'s event stream (event.lua), for a
        transition already made (``abort()``)."""
        async with broker_errors(self.url):
            await events.write(self.redis, self.keys, maxlen, queue, note, worker)

    async def read_events(
        self, after: dict[str, str], count: int, block_ms: int | None
    ) -> EventBatch:
        """Events after each queue's id (queue → id), at most ``count`` per queue,
        waiting up to ``block_ms`` when there are none (None: no wait)."""
        async with broker_errors(self.url):
            return await events.read(self.redis, self.keys, after, count, block_ms, self.cluster)

    async def event_queues(self) -> list[str]:
        """Queues that have an event stream."""
        async with broker_errors(self.url):
            return await events.event_queues(self.redis, self.keys)

    # -- schedules at run time ----------------------------------------------------

    async def schedule_states(
        self, schedules_: Sequence[tuple[str, str]]
    ) -> list[ScheduleState | None]:
        async with broker_errors(self.url):
            return await schedules.states(self.redis, self.keys, schedules_)

    async def pause_schedule(self, queue: str, name: str, resume: bool) -> bool:
        """Pause (or resume) schedule ``name`` whose jobs go to ``queue``; False
        when it already was."""
        async with broker_errors(self.url):
            return await schedules.pause(self.redis, self.keys, queue, name, resume)

    async def schedule_definitions(self) -> dict[str, bytes]:
        async with broker_errors(self.url):
            return await schedules.definitions(self.redis, self.keys)

    async def put_schedule(self, name: str, definition: bytes) -> None:
        async with broker_errors(self.url):
            await schedules.put(self.redis, self.keys, name, definition)

    async def forget_schedule(self, name: str) -> bool:
        async with broker_errors(self.url):
            return await schedules.forget(self.redis, self.keys, name)

"""The producer/awaiter side of the transport, as one object an ``App`` holds.

Creating it does no I/O. Its Redis clients belong to the event loops that
use it, one per loop: a script that runs ``asyncio.run`` twice gets a fresh
client the second time instead of one bound to a closed loop, and two loops
alive at once (an app's own loop and the sync bridge's, ``aioq/sync.py``) each
keep theirs instead of replacing each other's on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import TYPE_CHECKING, Any, cast

from redis.exceptions import NoScriptError

from . import results
from .batcher import Batcher
from .cluster import is_cluster, node_connection
from .connection import broker_errors, connect
from .keys import PAYLOAD_FIELD
from .replies import Replies
from .scripts import SCRIPTS
from .types import AbortCode, Aborted, NewJob

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio import Redis
    from redis.asyncio.connection import AbstractConnection

    from .._core.options import When
    from .keys import Keyspace

Command = tuple[Any, ...]

TAG_MANY = 64
"""``enqueue_many`` names the reply channel in the records of at most this many jobs."""


def _text(value: Any) -> str | None:
    return value.decode() if isinstance(value, bytes) else None if value is None else str(value)


class _Bound:
    """Everything that belongs to one event loop."""

    def __init__(self, url: str, keys: Keyspace, options: dict[str, Any], timeout: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.redis = connect(url, **options)
        self.cluster = is_cluster(self.redis)
        self.batcher = Batcher(self.redis, timeout)
        pool = None if self.cluster else self.redis.connection_pool
        self.subs = results.Subscriptions(self._opener(), timeout, pool)
        self.replies = Replies(self.subs, keys.reply_channel(uuid.uuid4().hex))
        self._loading: asyncio.Future[None] | None = None

    def _opener(self) -> results.Opener:
        """How the pub/sub reader gets a new connection: from the pool of the one
        server; on a cluster, to one primary after the other (a classic PUBLISH
        reaches every node's subscribers, so any node will do)."""
        redis = self.redis
        if not self.cluster:
            pool = redis.connection_pool

            async def from_pool(turn: int) -> AbstractConnection:
                conn: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
                return conn

            return from_pool

        async def to_a_node(turn: int) -> AbstractConnection:
            return await node_connection(redis, turn)  # type: ignore[arg-type]

        return to_a_node

    async def load_scripts(self) -> None:
        """Load the scripts (Redis answered NOSCRIPT). Callers that see NOSCRIPT
        together (a burst of sends to a fresh Redis) share one load."""
        loading = self._loading
        if loading is None or loading.done():
            loading = self._loading = asyncio.ensure_future(SCRIPTS.load_all(self.redis))
        await asyncio.shield(loading)

    async def aclose(self) -> None:
        await self.subs.aclose()
        await self.redis.aclose()


class Client:
    def __init__(self, url: str, keys: Keyspace, options: dict[str, Any], timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.keys = keys
        self._options = options
        self._bounds: dict[asyncio.AbstractEventLoop, _Bound] = {}

    def _get(self) -> _Bound:
        loop = asyncio.get_running_loop()
        bound = self._bounds.get(loop)
        if bound is None:
            # A closed loop can never close its client: forget it (as a single
            # slot replaced on the next loop did).
            for old in [known for known in list(self._bounds) if known.is_closed()]:
                self._bounds.pop(old, None)
            bound = self._bounds[loop] = _Bound(self.url, self.keys, self._options, self.timeout)
        return bound

    def forget(self, loop: asyncio.AbstractEventLoop) -> _Bound | None:
        """Drop the client of ``loop`` without closing it (a forked child must
        not touch its parent's connections); returns it, for the caller to
        keep referenced."""
        return self._bounds.pop(loop, None)

    @property
    def redis(self) -> Redis:
        return self._get().redis

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One script call through the batcher (shares its round trips)."""
        bound = self._get()
        sha = SCRIPTS[name].sha
        try:
            return await bound.batcher.call("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:
            await bound.load_scripts()
            return await bound.batcher.call("EVALSHA", sha, len(keys), *keys, *args)

    # -- sending ----------------------------------------------------------------
    #
    # Every send writes the job's record (create-if-absent, enqueue_record.lua)
    # and then its message. On one node they go next to each other in one
    # pipeline: no extra round trip, and the record is there before any worker
    # can start the job. On a cluster the record and the queue are on different
    # nodes, which a pipeline serves concurrently: the record is an awaited step
    # before the message is sent (``_steps``).

    def _record(self, job: NewJob, when: When | None) -> Command:
        return (
            "EVALSHA",
            SCRIPTS["enqueue_record"].sha,
            1,
            self.keys.job(job.job_id),
            job.task,
            job.queue,
            job.enqueued_ms,
            job.result_ttl_ms,
            job.lock or "",
            "" if when is None else when.kind,
            0 if when is None else when.ms,
        )

    def _fresh_record(self, job: NewJob, replies: Replies | None = None) -> list[Command]:
        """The record of a job sent to run now under a fresh id: a plain HSET,
        a fraction of the Redis CPU of enqueue_record.lua. No worker can have
        started a job whose message is not sent yet, and nothing else writes a
        fresh id's record, so there is nothing to protect: the pipeline runs it
        before the XADD on one connection (on a cluster: a step confirmed first).

        No TTL while its message waits: the record lives as long as the message
        does (the worker gives it ``result_ttl`` when the job ends; ``abort()``
        and ``purge`` when they end it), which saves Redis a PEXPIRE per send
        (5.0 → 3.7 µs of Redis CPU, benchmarks/README.md). A record sent without
        a message (a workflow step its predecessor's worker sends) keeps the TTL.
        With ``replies``, the record names this client's reply channel once it is
        up (field ``reply``)."""
        key = self.keys.job(job.job_id)
        fields: list[Any] = [
            "state",
            "queued",
            "task",
            job.task,
            "queue",
            job.queue,
            "enqueued_ms",
            job.enqueued_ms,
            "result_ttl_ms",
            job.result_ttl_ms,
        ]
        if job.lock:
            fields += ["lock", job.lock]
        reply = None if replies is None else replies.tag(key)
        if reply is not None:
            fields += ["reply", reply]
        if job.payload is not None:
            return [("HSET", key, *fields)]
        return [("HSET", key, *fields), ("PEXPIRE", key, job.result_ttl_ms)]

    async def _send_fresh(
        self,
        jobs: Sequence[NewJob],
        *steps: list[Command],
        many: bool = False,
        bound: _Bound | None = None,
    ) -> None:
        """``_steps`` for records written without a TTL: when any command fails (a
        refused XADD, a lost connection), every record of the call gets its TTL,
        so none can outlive a message that was never sent."""
        try:
            await self._steps(*steps, many=many, bound=bound)
        except Exception:
            expire = [("PEXPIRE", self.keys.job(j.job_id), j.result_ttl_ms) for j in jobs]
            with contextlib.suppress(Exception):
                await self._get().batcher.pipeline(expire)
            raise

    def _xadd(self, job: NewJob) -> Command:
        return ("XADD", self.keys.stream(job.queue, job.level), "*", PAYLOAD_FIELD, job.payload)

    async def _send(
        self, commands: list[Command], many: bool = False, bound: _Bound | None = None
    ) -> list[Any]:
        """Run ``commands`` in order in the batcher's next pipeline (or, ``many``,
        in pipelined chunks); raises the first error reply.

        A pipeline is not a transaction: after NOSCRIPT (Redis lost its scripts)
        the other commands still ran, so only the refused scripts are sent again,
        once the scripts are loaded. ``bound``: this loop's, when the caller has it
        (each ``_get`` is a ``get_running_loop()``: a ``getpid`` on Python 3.11).
        """
        bound = bound or self._get()
        run = bound.batcher.pipeline if many else bound.batcher.call_many
        replies = await run(commands)
        again = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if again:
            await bound.load_scripts()
            for i, reply in zip(again, await run([commands[i] for i in again]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _steps(
        self, *steps: list[Command], many: bool = False, bound: _Bound | None = None
    ) -> list[Any]:
        """Run ``steps`` in order; returns every reply (see ``_send``). On one node
        they share one pipeline (Redis runs one connection's commands in order);
        on a cluster each step is confirmed before the next is sent."""
        bound = bound or self._get()
        if not bound.cluster:
            return await self._send([c for step in steps for c in step], many, bound)
        replies: list[Any] = []
        for step in steps:
            if step:
                replies.extend(await self._send(step, many, bound))
        return replies

    async def enqueue(self, job: NewJob) -> None:
        """Send a job to run now: its record, then XADD."""
        async with broker_errors(self.url):
            bound = self._get()
            record = self._fresh_record(job, bound.replies)
            await self._send_fresh([job], record, [self._xadd(job)], bound=bound)

    async def enqueue_delayed(self, job: NewJob, when: When) -> None:
        """Send a job to run later: its record (``scheduled``), then the message into
        the delayed set, both due by Redis' clock (an eta already past runs now)."""
        delayed = (
            "EVALSHA",
            SCRIPTS["enqueue_delayed"].sha,
            2,
            self.keys.stream(job.queue, job.level),
            self.keys.delayed(job.queue, job.level),
            job.payload,
            when.kind,
            when.ms,
        )
        async with broker_errors(self.url):
            await self._steps([self._record(job, when)], [delayed], [self._hint(job.queue)])

    def _hint(self, queue: str) -> Command:
        """Ask the pumps to look at ``queue``'s delayed sets at once (the due-index
        hint; sent after the message: a pump that clears the hint sees it)."""
        return ("ZADD", self.keys.due(), "LT", 0, queue)

    async def enqueue_unique(self, job: NewJob, when: When | None, hold_ms: int) -> str:
        """Send unless the job's lock is held; returns the id of the job that holds it.

        ``hold_ms``: how long the lock lasts once the job is due (the wait of a
        delayed job is added by the script). A call that found the lock taken
        by another job deletes the record it made for its own, unsent, job id.
        """
        assert job.lock is not None
        unique = (
            "EVALSHA",
            SCRIPTS["enqueue_unique"].sha,
            3,
            self.keys.unique(job.queue, job.lock),
            self.keys.stream(job.queue, job.level),
            self.keys.delayed(job.queue, job.level),
            job.job_id,
            hold_ms,
            job.payload,
            "" if when is None else when.kind,
            0 if when is None else when.ms,
        )
        async with broker_errors(self.url):
            hint = [] if when is None else [self._hint(job.queue)]
            replies = await self._steps([self._record(job, when)], [unique], hint)
            created, (sent, holder), *_ = replies
            holder = holder.decode() if isinstance(holder, bytes) else str(holder)
            if not sent and created and holder != job.job_id:
                await self._get().batcher.call("DEL", self.keys.job(job.job_id))
        return holder

    async def enqueue_many(self, jobs: Sequence[NewJob]) -> None:
        """Send jobs to run now (XADD, after each one's record), in pipelined chunks.
        A job without a payload only gets its record (a workflow step its
        predecessor's worker will send)."""
        # A workflow's few jobs name the reply channel; a bulk send does not (its
        # outcomes would all come back to this process, awaited or not).
        replies = self._get().replies if len(jobs) <= TAG_MANY else None
        steps: list[list[Command]] = [[], []]
        if self._get().cluster:  # every record confirmed before any message is sent
            for job in jobs:
                steps[0].extend(self._fresh_record(job, replies))
                if job.payload is not None:
                    steps[1].append(self._xadd(job))
        else:  # one pipeline: each job's record, then its message
            for job in jobs:
                steps[0].extend(self._fresh_record(job, replies))
                if job.payload is not None:
                    steps[0].append(self._xadd(job))
        async with broker_errors(self.url):
            await self._send_fresh(jobs, *steps, many=True)

    async def wait_outcome(self, job_id: str, timeout: float | None) -> bytes:
        bound = self._get()
        async with broker_errors(self.url):
            bound.replies.open()  # from now on, jobs sent name the reply channel
            return await results.wait_outcome(
                bound.batcher, self.keys, bound.subs, job_id, timeout, self.timeout, bound.replies
            )

    async def abort(self, job_id: str, outcome: bytes, now_ms: int, ttl_ms: int) -> Aborted | None:
        """End the job as aborted unless it already ended or has no record (an id
        never sent, or expired: nothing is written then). ``ttl_ms`` is the
        record's TTL when it does not carry the job's own ``result_ttl``.

        Returns what the record said (to release the job's lock), or None when
        nothing was aborted."""
        async with broker_errors(self.url):
            reply = await self._script(
                "abort",
                [self.keys.job(job_id)],
                [
                    outcome,
                    now_ms,
                    ttl_ms,
                    self.keys.done_channel(job_id),
                    self.keys.abort_channel(),
                    job_id,
                ],
            )
        if reply[0] != AbortCode.ABORTED:
            return None
        task, queue, lock, kept, worker, attempts = (
            _text(v) for v in [*reply[1:7], None, None][:6]
        )
        return Aborted(task, queue, lock, int(kept) if kept else None, worker, int(attempts or 0))

    async def unlock(self, queue: str, lock: str, job_id: str, keep_ms: int) -> bool:
        """Release a unique job's lock if it still names ``job_id`` (unlock.lua):
        delete it (``keep_ms`` 0), or keep it ``keep_ms`` more."""
        async with broker_errors(self.url):
            done = await self._script(
                "unlock", [self.keys.unique(queue, lock)], [job_id, max(0, keep_ms)]
            )
        return bool(done)

    async def expire_record(self, job_id: str, ttl_ms: int) -> None:
        async with broker_errors(self.url):
            await self._get().batcher.call("PEXPIRE", self.keys.job(job_id), max(1, ttl_ms))

    async def report_progress(self, job_id: str, payload: bytes) -> None:
        batcher = self._get().batcher
        async with broker_errors(self.url):
            await asyncio.gather(
                batcher.call("HSET", self.keys.job(job_id), "progress", payload),
                batcher.call("PUBLISH", self.keys.progress_channel(job_id), payload),
            )

    async def watch(self, job_id: str) -> AsyncIterator[tuple[str, Any]]:
        bound = self._get()
        async with broker_errors(self.url):
            async for event in results.watch(bound.batcher, self.keys, bound.subs, job_id):
                yield event

    async def job_state(self, job_id: str) -> bytes | None:
        async with broker_errors(self.url):
            state = await self._get().batcher.call("HGET", self.keys.job(job_id), "state")
            return cast("bytes | None", state)

    async def job_record(self, job_id: str) -> dict[bytes, bytes]:
        async with broker_errors(self.url):
            return await results.read_record(self._get().batcher, self.keys, job_id)

    async def ping(self) -> None:
        async with broker_errors(self.url):
            await self._get().redis.ping()

    async def aclose(self) -> None:
        """Close the client of the running event loop (other loops keep theirs)."""
        bound = self._bounds.pop(asyncio.get_running_loop(), None)
        if bound is not None:
            await bound.aclose()

"""Worker-side stream operations: group set-up, reads, start/finish/ack, dead letters,
lease renewal and recovery of a dead worker's messages."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from redis import exceptions as rex

from .._core.message import now_ms
from .connection import CONNECTION_ERRORS, OPERATION_TIMEOUT, bounded
from .keys import GROUP, LEVELS, PAYLOAD_FIELD, Keyspace
from .scripts import SCRIPTS, run_pipeline

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

log = logging.getLogger("aioq.worker")

ACK_CHUNK = 500  # ids per ack.lua call: stays far below Lua's unpack() limit
RECORD_CHUNK = 500  # jobs per start_many / complete call


class Entry(NamedTuple):
    """One stream entry handed to a worker."""

    stream: str
    """The level stream it was read from (its key)."""
    queue: str
    level: int
    id: bytes
    payload: bytes | None  # None when the entry has no payload field (garbage)
    deliveries: int = 1

    @property
    def key(self) -> tuple[str, bytes]:
        """Identifies the entry among all of a worker's streams."""
        return (self.stream, self.id)


class Start(NamedTuple):
    """A job about to run one attempt (start.lua)."""

    job_id: str
    task: str
    queue: str
    enqueued_ms: int


class Admit(NamedTuple):
    """A limited task's job asking to start (see admit.lua)."""

    task: str
    job_id: str
    interval_us: int  # 0: no rate limit
    reserved: bool
    max_running: int  # 0: no concurrency limit
    lease_ms: int


class Finish(NamedTuple):
    """The final outcome of one attempt, as the completer writes it."""

    job_id: str
    attempt: int
    """The attempt's fencing token with the worker id (0: no running attempt,
    e.g. a dead letter's failure, which any non-final job takes)."""
    state: str
    outcome: bytes
    finished_ms: int
    ttl_ms: int
    unlock: tuple[str, int] | None = None
    """A unique job's lock to release with it: (lock key, ms to keep it or 0)."""


class Completion(NamedTuple):
    """One delivery to acknowledge, with the outcome to write first (or None)."""

    entry: Entry
    finish: Finish | None


class Wrote(IntEnum):
    """What a fenced outcome write did (the scripts' status codes)."""

    NOTHING = 0
    """No outcome to write (a bare ack)."""
    WRITTEN = 1
    FINAL = 2
    """The job had already ended: first writer wins, nothing changed."""
    FENCED = 3
    """A later attempt holds the job: nothing written (and nothing acked)."""


class Done(NamedTuple):
    """The completer's reply for one ``Completion``."""

    wrote: Wrote
    acked: bool


class Streams:
    def __init__(self, redis: Redis, keys: Keyspace, *, batch_records: bool = True) -> None:
        self.redis = redis
        self.keys = keys
        self.batch_records = batch_records
        """One script call per batch for job records (start_many / finish_many). Job
        keys of a batch sit in different Cluster slots, so on Cluster this must be
        off: then each job gets its own start.lua / finish.lua."""

    async def ensure_group(self, queue: str) -> None:
        """Create the stream and its group, reading from the very start (``0``),
        so messages enqueued before any worker ran are processed."""
        try:
            await self.redis.xgroup_create(self.keys.stream(queue), GROUP, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def fetch(
        self, consumer: str, queues: Sequence[str], count: int, ascending: bool
    ) -> tuple[list[Entry], dict[str, bytes]]:
        """Up to ``count`` new entries of ``queues``, most urgent level first
        (``ascending``: least urgent first). When there are none, the second
        value maps each level stream to the id a new entry would follow, for
        ``wait``."""
        keys = [k for q in queues for k in self.keys.level_streams(q)]
        async with bounded():
            reply = await SCRIPTS.call(
                self.redis, "fetch", keys, [GROUP, consumer, count, int(ascending), LEVELS]
            )
        if reply[0] == 0:
            return [], dict(zip(keys, reply[1:], strict=True))
        out: list[Entry] = []
        for i in range(1, len(reply), 3):
            index = int(reply[i]) - 1
            fields = reply[i + 2]
            out.append(
                Entry(
                    keys[index],
                    queues[index // LEVELS],
                    LEVELS - 1 - index % LEVELS,
                    reply[i + 1],
                    _payload(fields),
                )
            )
        return out, {}

    async def wait(self, after: dict[str, bytes], block_ms: int) -> None:
        """Block until one of the streams gets an entry after the given id, or
        ``block_ms`` pass (XREAD takes nothing: ``fetch`` then takes it). A
        stream that does not exist yet (id ``b""``) is watched from its start."""
        streams = {key: entry_id or b"0-0" for key, entry_id in after.items()}
        async with bounded(block_ms / 1000 + OPERATION_TIMEOUT):
            await self.redis.xread(streams, count=1, block=block_ms)  # type: ignore[arg-type]

    async def read_blocking(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, block_ms: int
    ) -> list[Entry]:
        """XREADGROUP ``>`` on existing level streams (key → (queue, level)),
        blocking up to ``block_ms``; at most ``count`` entries per stream."""
        async with bounded(block_ms / 1000 + OPERATION_TIMEOUT):
            reply: Any = await self.redis.xreadgroup(
                GROUP,
                consumer,
                dict.fromkeys(streams, ">"),
                count=count,
                block=block_ms,
            )
        out: list[Entry] = []
        for stream, items in reply or ():
            key = stream.decode() if isinstance(stream, bytes) else stream
            queue, level = streams[key]
            for entry_id, fields in items:
                payload = fields.get(PAYLOAD_FIELD) if fields else None
                out.append(Entry(key, queue, level, entry_id, payload))
        return out

    async def start(self, worker: str, started_ms: int, starts: Sequence[Start]) -> list[Any]:
        """Mark each job running for a new attempt (start.lua), in one round trip.
        A reply is the attempt number (run it), bytes (its stored outcome: it
        already ended) or an exception (not started: hand the entry back)."""

        if not self.batch_records:

            def build(pipe: Pipeline) -> None:
                for s in starts:
                    SCRIPTS.queue(
                        pipe,
                        "start",
                        [self.keys.job(s.job_id)],
                        [worker, started_ms, s.task, s.queue, s.enqueued_ms],
                    )

            return await run_pipeline(self.redis, build)

        # One start_many per chunk: a batch costs a command, not one per job.
        chunks = [starts[i : i + RECORD_CHUNK] for i in range(0, len(starts), RECORD_CHUNK)]

        def build_many(pipe: Pipeline) -> None:
            for chunk in chunks:
                per_job = [
                    a
                    for s in chunk
                    for a in (self.keys.job(s.job_id), s.task, s.queue, s.enqueued_ms)
                ]
                SCRIPTS.queue(pipe, "start_many", [], [worker, started_ms, *per_job])

        replies: list[Any] = []
        for chunk, reply in zip(chunks, await run_pipeline(self.redis, build_many), strict=True):
            replies.extend([reply] * len(chunk) if isinstance(reply, Exception) else reply)
        return replies

    async def complete(self, worker: str, items: Sequence[Completion]) -> list[Done | Exception]:
        """Write outcomes, then ack — each ack only once its outcome (and unique
        lock release) is confirmed, each write fenced (see ``Done``).

        A reply is an exception when Redis refused that item's write (out of
        memory, a moved slot…): nothing of it is acked then, so the message
        stays pending for this worker to try again (or for redelivery).

        On a single node the whole batch is one atomic script per chunk
        (complete.lua). Otherwise (Cluster: records and queues in different
        slots) a first round trip writes the outcomes (finish.lua) and locks,
        and a second acks what the first confirmed.
        """
        if self.batch_records:
            return await self._complete_one_node(worker, items)
        return await self._complete_by_slot(worker, items)

    def _finish_args(self, worker: str, f: Finish) -> list[Any]:
        return [
            worker,
            f.attempt,
            f.state,
            f.outcome,
            f.finished_ms,
            f.ttl_ms,
            self.keys.done_channel(f.job_id),
        ]

    async def _complete_one_node(
        self, worker: str, items: Sequence[Completion]
    ) -> list[Done | Exception]:
        chunks = [items[i : i + RECORD_CHUNK] for i in range(0, len(items), RECORD_CHUNK)]

        def args(c: Completion) -> tuple[Any, ...]:
            e, f = c.entry, c.finish
            if f is None:
                return (e.stream, e.id, e.deliveries, "", "", 0, "", "", 0, 0, "", "", 0)
            lock, keep = f.unlock or ("", 0)
            return (
                e.stream,
                e.id,
                e.deliveries,
                self.keys.job(f.job_id),
                f.job_id,
                f.attempt,
                f.state,
                f.outcome,
                f.finished_ms,
                f.ttl_ms,
                self.keys.done_channel(f.job_id),
                lock,
                keep,
            )

        def build(pipe: Pipeline) -> None:
            for chunk in chunks:
                flat = [a for c in chunk for a in args(c)]
                SCRIPTS.queue(pipe, "complete", [], [GROUP, worker, *flat])

        out: list[Done | Exception] = []
        for chunk, reply in zip(chunks, await run_pipeline(self.redis, build), strict=True):
            if isinstance(reply, Exception):
                out.extend([reply] * len(chunk))
            else:
                out.extend(
                    Done(Wrote(int(reply[i])), bool(reply[i + 1])) for i in range(0, len(reply), 2)
                )
        return out

    async def _complete_by_slot(
        self, worker: str, items: Sequence[Completion]
    ) -> list[Done | Exception]:
        # 1. outcomes (record slots) and unique locks (queue slots)
        def build_writes(pipe: Pipeline) -> None:
            for c in items:
                if c.finish is not None:
                    f = c.finish
                    if f.unlock is not None:
                        SCRIPTS.queue(pipe, "unlock", [f.unlock[0]], [f.job_id, f.unlock[1]])
                    SCRIPTS.queue(
                        pipe, "finish", [self.keys.job(f.job_id)], self._finish_args(worker, f)
                    )

        replies = (
            iter(await run_pipeline(self.redis, build_writes))
            if any(c.finish is not None for c in items)
            else iter(())
        )
        wrote: list[Wrote | Exception] = []
        for c in items:
            if c.finish is None:
                wrote.append(Wrote.NOTHING)
                continue
            unlocked = next(replies) if c.finish.unlock is not None else None
            reply = next(replies)
            if isinstance(unlocked, Exception):
                wrote.append(unlocked)
            elif isinstance(reply, Exception):
                wrote.append(reply)
            else:
                wrote.append(Wrote(int(reply[0])))
        # 2. acks of what is confirmed (queue slots), fenced per delivery
        to_ack = [
            c.entry
            for c, w in zip(items, wrote, strict=True)
            if not isinstance(w, Exception) and w != Wrote.FENCED
        ]
        acked = await self.ack(worker, to_ack)
        return [
            w if isinstance(w, Exception) else Done(w, acked.get(c.entry.key, False))
            for c, w in zip(items, wrote, strict=True)
        ]

    async def ack(self, worker: str, entries: Sequence[Entry]) -> dict[tuple[str, bytes], bool]:
        """Ack and delete entries this worker still holds (ack.lua, fenced per
        delivery); maps each entry's key to whether it was acked. An entry whose
        ack was refused is missing from the map."""
        by_stream: dict[str, list[Entry]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry)
        calls = [
            (stream, group[i : i + ACK_CHUNK])
            for stream, group in by_stream.items()
            for i in range(0, len(group), ACK_CHUNK)
        ]
        if not calls:
            return {}

        def build(pipe: Pipeline) -> None:
            for stream, chunk in calls:
                flat = [a for e in chunk for a in (e.id, e.deliveries)]
                SCRIPTS.queue(pipe, "ack", [stream], [GROUP, worker, *flat])

        out: dict[tuple[str, bytes], bool] = {}
        for (_, chunk), reply in zip(calls, await run_pipeline(self.redis, build), strict=True):
            if not isinstance(reply, Exception):
                out.update((e.key, bool(r)) for e, r in zip(chunk, reply, strict=True))
        return out

    async def write_outcome(self, worker: str, finish: Finish) -> tuple[Wrote, bytes | None]:
        """Write one outcome without acking its message (finish.lua, fenced): a
        workflow step's, before its follow-ups, or a dead letter's failure.
        Returns what it did and, when the job had already ended, the stored outcome."""
        reply = await SCRIPTS.call(
            self.redis, "finish", [self.keys.job(finish.job_id)], self._finish_args(worker, finish)
        )
        wrote = Wrote(int(reply[0]))
        return wrote, (reply[1] if wrote == Wrote.FINAL else None)

    async def dead_letter(
        self, entry: Entry, worker: str, reason: str, maxlen: int, now_ms: int
    ) -> bool:
        """Move ``entry`` to its queue's dead-letter stream with ``reason``,
        atomically, if this worker still holds it (False: nothing was done)."""
        moved = await SCRIPTS.call(
            self.redis,
            "dead",
            [entry.stream, self.keys.dead(entry.queue)],
            [
                GROUP,
                worker,
                entry.id,
                entry.deliveries,
                entry.payload or b"",
                reason,
                maxlen,
                now_ms,
                entry.level,
            ],
        )
        return bool(moved)

    async def pump(self, queue: str, now_ms: int, limit: int) -> tuple[int, int]:
        """Move due delayed messages into the streams of their priority levels;
        returns (moved, next due ms or -1)."""
        moved, next_due = await SCRIPTS.call(
            self.redis,
            "pump",
            [*self.keys.level_delayed(queue), *self.keys.level_streams(queue)],
            [now_ms, limit],
        )
        return int(moved), int(next_due)

    async def retry(self, entry: Entry, worker: str, payload: bytes, delay_ms: int) -> int | None:
        """Schedule the next attempt ``delay_ms`` from now by Redis' clock and ack
        this delivery, atomically and fenced (retry.lua). Returns the due time
        (ms), or None when this worker no longer holds the entry (nothing done)."""
        due = await SCRIPTS.call(
            self.redis,
            "retry",
            [entry.stream, self.keys.delayed(entry.queue, entry.level)],
            [GROUP, worker, entry.id, entry.deliveries, payload, max(0, delay_ms)],
        )
        return int(due) or None

    async def mark_retrying(
        self, job_id: str, worker: str, attempt: int, error: bytes, delay_ms: int, ttl_ms: int
    ) -> Wrote:
        """Record that this attempt failed and the job is retried after ``delay_ms``
        (mark.lua, fenced): WRITTEN, FINAL (it ended meanwhile) or FENCED."""
        done = await SCRIPTS.call(
            self.redis,
            "mark",
            [self.keys.job(job_id)],
            [worker, attempt, error, max(0, delay_ms), ttl_ms],
        )
        return Wrote(int(done))

    async def progress(self, job_id: str, worker: str, attempt: int, report: bytes) -> bool:
        """Store and publish a running attempt's progress report (progress.lua,
        fenced); False when the job ended or a later attempt holds it."""
        stored = await SCRIPTS.call(
            self.redis,
            "progress",
            [self.keys.job(job_id)],
            [worker, attempt, report, self.keys.progress_channel(job_id)],
        )
        return bool(stored)

    async def abort_requests(self) -> AsyncIterator[str]:
        """Job ids announced for abort, forever; survives reconnects (an
        announcement made while disconnected is caught by ``states``)."""
        delay = 0.1
        outage = False
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.keys.abort_channel())
                delay = 0.1
                outage = False
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is not None and msg["type"] == "message":
                        yield msg["data"].decode()
            except CONNECTION_ERRORS as exc:
                if not outage:
                    log.warning("abort channel lost (%s); resubscribing", exc)
                    outage = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def states(self, job_ids: Sequence[str]) -> list[bytes | None]:
        """The ``state`` field of each job's record."""
        pipe = self.redis.pipeline(transaction=False)
        for job_id in job_ids:
            pipe.hget(self.keys.job(job_id), "state")
        async with bounded():
            return cast("list[bytes | None]", await pipe.execute())

    async def enqueue_once(
        self, queue: str, level: int, job_id: str, payload: bytes, ttl_ms: int
    ) -> bool:
        """Send a workflow follow-up unless it was sent before (deterministic id)."""
        added = await SCRIPTS.call(
            self.redis,
            "enqueue_once",
            [self.keys.stream(queue, level), self.keys.once(queue, job_id)],
            [payload, ttl_ms],
        )
        return bool(added)

    async def join(
        self, group_id: str, index: int, value: bytes, size: int, ttl_ms: int
    ) -> list[bytes] | None:
        """Record a member's result; all results (in order) once the group is complete."""
        values = await SCRIPTS.call(
            self.redis, "join", [self.keys.barrier(group_id)], [index, value, size, ttl_ms]
        )
        return list(values) if values else None

    async def end_group(self, group_id: str, ttl_ms: int) -> None:
        """The group's workflow ended early: close its barrier (it never fires)
        and let it expire after ``ttl_ms``."""
        await SCRIPTS.call(self.redis, "end_group", [self.keys.barrier(group_id)], [ttl_ms])

    async def admit(self, requests: Sequence[Admit]) -> list[Any]:
        """Ask the limiters whether each job may start (admit.lua), in one pipeline.
        Each reply is ``[0]`` (start), ``[1, wait µs]`` (rate slot reserved) or
        ``[2]`` (concurrency limit reached), or an exception."""

        def build(pipe: Pipeline) -> None:
            for r in requests:
                SCRIPTS.queue(
                    pipe,
                    "admit",
                    [self.keys.rate(r.task), self.keys.running(r.task)],
                    [r.interval_us, int(r.reserved), r.job_id, r.max_running, r.lease_ms],
                )

        return await run_pipeline(self.redis, build)

    async def running_slots(self, slots: Sequence[tuple[str, str]], lease_ms: int | None) -> None:
        """Renew (``lease_ms``) or give up (None) the running slots of (task, job id)."""
        if not slots:
            return
        pipe = self.redis.pipeline(transaction=False)
        for task, job_id in slots:
            key = self.keys.running(task)
            if lease_ms is None:
                pipe.zrem(key, job_id)
            else:
                pipe.execute_command("ZADD", key, "XX", now_ms() + lease_ms, job_id)
        async with bounded():
            await pipe.execute()

    async def unlock(self, lock: str, job_id: str, keep_ms: int) -> None:
        """Release a unique job's lock (``keep_ms`` 0), or keep it ``keep_ms`` more."""
        await SCRIPTS.call(self.redis, "unlock", [lock], [job_id, keep_ms])

    async def renew(self, stream: str, consumer: str, ids: Sequence[bytes]) -> list[bytes]:
        """Refresh the lease on ``ids`` of ``stream``; returns those this consumer
        no longer owns."""
        lost: list[bytes] = await SCRIPTS.call(
            self.redis, "renew", [stream], [GROUP, consumer, *ids]
        )
        return lost

    async def claim(
        self, queue: str, consumer: str, min_idle_ms: int, cursors: list[bytes], count: int
    ) -> tuple[list[bytes], list[Entry], int]:
        """Take over up to ``count`` entries of ``queue`` idle longer than
        ``min_idle_ms`` (a dead worker's), most urgent level first.

        Returns the next XAUTOCLAIM cursor of each level stream (follow them:
        each call scans a bounded part of the pending lists), the claimed
        entries with their delivery counts, and how many pending ids had been
        deleted from the streams.
        """
        keys = self.keys.level_streams(queue)
        async with bounded():
            reply = await SCRIPTS.call(
                self.redis, "claim", keys, [GROUP, consumer, min_idle_ms, count, *cursors]
            )
        n = len(keys)
        entries = [
            Entry(
                keys[int(reply[i]) - 1],
                queue,
                LEVELS - int(reply[i]),
                reply[i + 1],
                _payload(reply[i + 2]),
                int(reply[i + 3]),
            )
            for i in range(n + 1, len(reply), 4)
        ]
        return list(reply[:n]), entries, int(reply[n])

    async def remove_consumer_if_idle(self, stream: str, consumer: str) -> None:
        """Delete this consumer from the group when it holds no pending entries
        (deleting one that does would orphan them)."""
        info = await self.redis.xpending_range(stream, GROUP, "-", "+", 1, consumername=consumer)
        if not info:
            await self.redis.xgroup_delconsumer(stream, GROUP, consumer)

    async def release(self, stream: str, consumer: str, ids: Sequence[bytes], idle_ms: int) -> None:
        """Hand unfinished entries back at once: mark them idle for ``idle_ms`` so
        the next recovery pass of any worker claims them (used on shutdown)."""
        if ids:
            await self.redis.xclaim(
                stream, GROUP, consumer, 0, list(ids), idle=idle_ms, justid=True
            )


def _payload(fields: Any) -> bytes | None:
    """The ``m`` field of an entry's flat field list (None when it has none)."""
    if not fields:
        return None
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == PAYLOAD_FIELD:
            value: bytes = fields[i + 1]
            return value
    return None

"""Worker-side stream operations: group set-up, reads, start/finish/ack, dead letters,
lease renewal and recovery of a dead worker's messages (the delayed sets and the
due index: ``delays.py``; job records and completions: ``outcomes.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, cast

from redis import exceptions as rex

from .connection import OPERATION_TIMEOUT, REDIS_ERRORS, bounded, outage_text
from .delays import Delays
from .keys import GROUP, LEVELS, PAYLOAD_FIELD, Keyspace
from .outcomes import Outcomes
from .scripts import SCRIPTS, run_pipeline
from .types import (
    Admission,
    Admit,
    Claimed,
    Completion,
    Done,
    Entry,
    Finish,
    Renewed,
    Start,
    Verdict,
    Wrote,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from .._core.event import Note

log = logging.getLogger("aioq.worker")

CLAIM_PAGE_MIN = 100
CLAIM_PAGE_MAX = 1000
"""Pending entries one recovery pass reads per stream: 10 per message wanted, within these."""


__all__ = [
    "Admission",
    "Admit",
    "Claimed",
    "Completion",
    "Done",
    "Entry",
    "Finish",
    "Renewed",
    "Start",
    "Streams",
    "Wrote",
]


class Streams(Outcomes, Delays):
    def __init__(
        self, redis: Redis, keys: Keyspace, *, batch_records: bool = True, events_maxlen: int = 0
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.events_maxlen = events_maxlen
        """Cap of each queue's event stream; 0: no lifecycle events are written."""
        self.batch_records = batch_records
        """One script call per batch for job records (start_many / finish_many). Job
        keys of a batch sit in different Cluster slots, so on Cluster this must be
        off: then each job gets its own start.lua / finish.lua."""

    def level_stream(self, queue: str, level: int) -> str:
        """The stream of ``queue``'s priority ``level`` (how entries name their stream)."""
        return self.keys.stream(queue, level)

    def unique_lock(self, queue: str, lock: str) -> str:
        """The key of a unique job's lock (what ``Finish.unlock`` names)."""
        return self.keys.unique(queue, lock)

    async def ensure_group(self, queue: str) -> None:
        """Create the stream and its group, reading from the very start (``0``),
        so messages enqueued before any worker ran are processed."""
        try:
            await self.redis.xgroup_create(self.keys.stream(queue), GROUP, id="0", mkstream=True)
        except rex.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def backlog(self, queues: Sequence[str]) -> int:
        """Messages of ``queues`` not finished yet: ready, held by any worker (acked
        entries are deleted, so a stream holds only these) or delayed, whenever due."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            for level in range(LEVELS):
                pipe.xlen(self.keys.stream(queue, level))
                pipe.zcard(self.keys.delayed(queue, level))
        async with bounded():
            return sum(int(n) for n in await pipe.execute())

    async def fetch(
        self, consumer: str, queues: Sequence[str], count: int, ascending: bool
    ) -> tuple[list[Entry], dict[str, bytes]]:
        """Up to ``count`` new entries of ``queues``, most urgent level first
        (``ascending``: least urgent first). When there are none, the second
        value maps each level stream to the id a new entry would follow, for
        ``wait`` (``b""``: the stream does not exist yet)."""
        streams = {
            k: (q, LEVELS - 1 - i) for q in queues for i, k in enumerate(self.keys.level_streams(q))
        }
        entries, marks = await self.fetch_streams(consumer, streams, count, ascending)
        return entries, ({} if entries else marks)

    async def fetch_streams(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, ascending: bool
    ) -> tuple[list[Entry], dict[str, bytes]]:
        """Up to ``count`` new entries of ``streams`` (key → (queue, level)), most
        urgent level first, equally urgent ones in the order given. The second
        value holds a mark for every stream looked at that had nothing new: the
        id after which its next entry will appear (``wait``), ``b""`` when it does
        not exist yet."""
        keys = list(streams)
        levels = [streams[k][1] for k in keys]
        async with bounded():
            reply = await SCRIPTS.call(
                self.redis, "fetch", keys, [GROUP, consumer, count, int(ascending), *levels]
            )
        m = int(reply[0])
        marks = {keys[int(reply[i]) - 1]: reply[i + 1] for i in range(1, 2 * m + 1, 2)}
        out: list[Entry] = []
        for i in range(2 * m + 1, len(reply), 3):
            key = keys[int(reply[i]) - 1]
            queue, level = streams[key]
            out.append(Entry(key, queue, level, reply[i + 1], _payload(reply[i + 2])))
        return out, marks

    async def peek(self, marks: dict[str, bytes], block_ms: int | None = None) -> list[str]:
        """The streams that have an entry after their mark (XREAD COUNT 1, which
        takes nothing), waiting up to ``block_ms`` for one when given (then Redis
        answers with the first stream that gets one)."""
        if not marks:
            return []
        timeout = OPERATION_TIMEOUT + (block_ms or 0) / 1000
        async with bounded(timeout):
            reply: Any = await self.redis.xread(
                {k: v or b"0-0" for k, v in marks.items()},
                count=1,
                block=block_ms,
            )
        return [k.decode() if isinstance(k, bytes) else str(k) for k, _ in reply or ()]

    async def existing(self, keys: Sequence[str], chunk: int = 500) -> list[str]:
        """Which of ``keys`` exist: one multi-key EXISTS per ``chunk`` keys, then
        one per key of the chunks that counted any."""
        chunks = [list(keys[i : i + chunk]) for i in range(0, len(keys), chunk)]
        pipe = self.redis.pipeline(transaction=False)
        for part in chunks:
            pipe.exists(*part)
        async with bounded():
            counts = await pipe.execute()
            found = [k for part, n in zip(chunks, counts, strict=True) if n for k in part]
            if not found:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for key in found:
                pipe.exists(key)
            return [k for k, n in zip(found, await pipe.execute(), strict=True) if n]

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

    async def dead_letter(
        self,
        entry: Entry,
        worker: str,
        reason: str,
        maxlen: int,
        now_ms: int,
        note: Note | None = None,
    ) -> bool:
        """Move ``entry`` to its queue's dead-letter stream with ``reason``,
        atomically, if this worker still holds it (False: nothing was done); with
        ``note``, its ``dead`` event is written in the same step."""
        keys, extra = [entry.stream, self.keys.dead(entry.queue)], []
        if note is not None and self.events_maxlen:
            keys.append(self.keys.events(entry.queue))
            extra = [self.events_maxlen, note.job_id, note.task, note.attempt]
        moved = await SCRIPTS.call(
            self.redis,
            "dead",
            keys,
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
                *extra,
            ],
        )
        return bool(moved)

    async def retry(
        self, entry: Entry, worker: str, payload: bytes, delay_ms: int, note: Note | None = None
    ) -> int | None:
        """Schedule the next attempt ``delay_ms`` from now by Redis' clock and ack
        this delivery, atomically and fenced (retry.lua), with ``note`` (its
        ``retrying`` event) if given and events are on. Returns the due time (ms),
        or None when this worker no longer holds the entry (nothing done)."""
        keys = [entry.stream, self.keys.delayed(entry.queue, entry.level)]
        args = [GROUP, worker, entry.id, entry.deliveries, payload, max(0, delay_ms)]
        if note is not None and self.events_maxlen:
            keys.append(self.keys.events(entry.queue))
            args += [self.events_maxlen, note.job_id, note.task, note.attempt, note.detail]
        due = await SCRIPTS.call(self.redis, "retry", keys, args)
        if due:
            # Only a hint: a worker's pump sweep finds the message without it.
            with contextlib.suppress(*REDIS_ERRORS):
                await self.hint_due(entry.queue, int(due))
        return int(due) or None

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
            except REDIS_ERRORS as exc:
                if not outage:
                    log.warning("abort channel lost (%s); resubscribing", outage_text(exc))
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

    async def admit(self, requests: Sequence[Admit]) -> list[Admission | Exception]:
        """Ask the limiters whether each job may start (admit.lua), in one pipeline:
        an ``Admission`` each, or the exception Redis answered with."""

        def build(pipe: Pipeline) -> None:
            for r in requests:
                SCRIPTS.queue(
                    pipe,
                    "admit",
                    [self.keys.rate(r.task), self.keys.running(r.task)],
                    [r.interval_us, int(r.reserved), r.job_id, r.max_running, r.lease_ms],
                )

        return [
            r
            if isinstance(r, Exception)
            else Admission(Verdict(int(r[0])), int(r[1]) if len(r) > 1 else 0)
            for r in await run_pipeline(self.redis, build)
        ]

    async def running_slots(
        self, slots: Sequence[tuple[str, str, int]], lease_ms: int | None
    ) -> list[str]:
        """Renew for ``lease_ms`` by the Redis clock (or give up, None) the running
        slots of (task, job id, the task's max_running), one slots.lua call per
        task in one pipeline. Returns the job ids that hold no slot any more (it
        lapsed and the limit was reached meanwhile)."""
        by_task: dict[str, tuple[int, list[str]]] = {}
        for task, job_id, max_running in slots:
            by_task.setdefault(task, (max_running, []))[1].append(job_id)
        if not by_task:
            return []

        def build(pipe: Pipeline) -> None:
            for task, (max_running, ids) in by_task.items():
                SCRIPTS.queue(
                    pipe, "slots", [self.keys.running(task)], [lease_ms or 0, max_running, *ids]
                )

        lost: list[str] = []
        for reply in await run_pipeline(self.redis, build):
            if isinstance(reply, Exception):
                raise reply
            lost.extend(i.decode() if isinstance(i, bytes) else str(i) for i in reply)
        return lost

    async def unlock(self, lock: str, job_id: str, keep_ms: int) -> None:
        """Release a unique job's lock (``keep_ms`` 0), or keep it ``keep_ms`` more."""
        await SCRIPTS.call(self.redis, "unlock", [lock], [job_id, keep_ms])

    async def renew(self, stream: str, consumer: str, ids: Sequence[bytes]) -> Renewed:
        """Refresh the lease on ``ids`` of ``stream``; tells which ones another
        consumer took over and which are no longer pending (acked or deleted)."""
        async with bounded():
            taken, gone = await SCRIPTS.call(self.redis, "renew", [stream], [GROUP, consumer, *ids])
        return Renewed(list(taken), list(gone))

    async def claim(
        self, queue: str, consumer: str, min_idle_ms: int, cursors: list[bytes], count: int
    ) -> Claimed:
        """Take over up to ``count`` entries of ``queue`` that other consumers let
        idle longer than ``min_idle_ms`` (a dead or stalled worker's), most urgent
        level first. This consumer's own idle entries are listed, never claimed.

        Follow the returned cursors: each call reads a bounded page of each
        level's pending list.
        """
        keys = self.keys.level_streams(queue)
        page = min(CLAIM_PAGE_MAX, max(CLAIM_PAGE_MIN, 10 * count))
        async with bounded():
            reply = await SCRIPTS.call(
                self.redis,
                "claim",
                keys,
                [GROUP, consumer, min_idle_ms, count, page, *cursors],
            )
        n = len(keys)
        mine_count = int(reply[n + 1])
        at = n + 2
        mine = [(keys[int(reply[i]) - 1], reply[i + 1]) for i in range(at, at + 2 * mine_count, 2)]
        at += 2 * mine_count
        entries = [
            Entry(
                keys[int(reply[i]) - 1],
                queue,
                LEVELS - int(reply[i]),
                reply[i + 1],
                _payload(reply[i + 2]),
                int(reply[i + 3]),
            )
            for i in range(at, len(reply), 4)
        ]
        return Claimed(list(reply[:n]), entries, int(reply[n]), mine)

    async def pending_summaries(self, streams: Sequence[str]) -> dict[str, dict[str, int]]:
        """Per level stream, its pending entries per consumer (XPENDING's summary
        form, one pipeline); streams without the group are left out."""
        pipe = self.redis.pipeline(transaction=False)
        for key in streams:
            pipe.xpending(key, GROUP)
        async with bounded():
            replies = await pipe.execute(raise_on_error=False)
        out: dict[str, dict[str, int]] = {}
        for key, reply in zip(streams, replies, strict=True):
            if isinstance(reply, dict) and reply.get("pending"):
                out[key] = {
                    c["name"].decode() if isinstance(c["name"], bytes) else str(c["name"]): int(
                        c["pending"]
                    )
                    for c in reply.get("consumers") or ()
                }
        return out

    async def reclaim(
        self, queue: str, level: int, consumer: str, ids: Sequence[bytes], min_idle_ms: int
    ) -> list[Entry]:
        """Deliver this consumer's own idle entries of one level stream to it again
        (ones it no longer holds: given back, or left by a task that went wrong)."""
        stream = self.keys.stream(queue, level)
        async with bounded():
            reply = await SCRIPTS.call(
                self.redis, "reclaim", [stream], [GROUP, consumer, min_idle_ms, *ids]
            )
        return [
            Entry(stream, queue, level, reply[i], _payload(reply[i + 1]), int(reply[i + 2]))
            for i in range(0, len(reply), 3)
        ]

    async def forget_consumers(
        self, streams: Sequence[str], min_idle_ms: int, keep: str = "", only: str = ""
    ) -> list[str]:
        """Delete consumers of ``streams`` idle at least ``min_idle_ms`` that hold
        no pending entry, except ``keep`` (or only ``only``); returns their names."""
        async with bounded():
            removed = await SCRIPTS.call(
                self.redis, "forget_consumers", list(streams), [GROUP, min_idle_ms, keep, only]
            )
        return [r.decode() if isinstance(r, bytes) else str(r) for r in removed]

    async def release(self, stream: str, consumer: str, ids: Sequence[bytes], idle_ms: int) -> None:
        """Hand unfinished entries back at once: mark them idle for ``idle_ms`` so
        the next recovery pass of any other worker claims them (on shutdown), or
        this worker's own pass takes them back (after a failed start). Only entries
        this consumer still holds (release.lua)."""
        if ids:
            async with bounded():
                await SCRIPTS.call(
                    self.redis, "release", [stream], [GROUP, consumer, idle_ms, *ids]
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

"""Worker-side stream operations: group set-up, reads, start/finish/ack, dead letters,
lease renewal and recovery of a dead worker's messages (the delayed sets and the
due index: ``delays.py``; job records and completions: ``outcomes.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, cast

from redis import exceptions as rex

from .cluster import by_slot, execute_pipeline, is_cluster
from .connection import REDIS_ERRORS, bounded, outage_text
from .delays import Delays
from .keys import GROUP, LEVELS, Keyspace
from .outcomes import Outcomes
from .reads import Reads, payload_of
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


class Streams(Outcomes, Delays, Reads):
    def __init__(
        self,
        redis: Redis,
        keys: Keyspace,
        *,
        batch_records: bool = True,
        events_maxlen: int = 0,
        cluster: bool | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.events_maxlen = events_maxlen
        """Cap of each queue's event stream; 0: no lifecycle events are written."""
        self.cluster = is_cluster(redis) if cluster is None else cluster
        """Redis Cluster: reads and pipelines whose order matters go per slot."""
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

    async def ensure_groups(self, queues: Sequence[str], chunk: int = 100) -> set[str]:
        """``ensure_group`` for many queues, and the level streams of ``queues``
        that exist (every level-0 one, then): one ``groups.lua`` per ``chunk``
        queues (per slot group on a cluster), all in one pipeline. A worker on
        1,000 queues starts in one round trip instead of 1,000, and knows which
        level streams are missing before its first fetch (``ManyQueues``)."""
        level0 = {self.keys.stream(q): q for q in queues}
        groups = by_slot(level0) if self.cluster else [list(level0)]
        parts = [g[i : i + chunk] for g in groups for i in range(0, len(g), chunk)]
        others = [
            [self.keys.stream(level0[k], level) for k in part for level in range(1, LEVELS)]
            for part in parts
        ]

        def build(pipe: Pipeline) -> None:
            for part, rest in zip(parts, others, strict=True):
                SCRIPTS.queue(pipe, "groups", [*part, *rest], [GROUP, len(part)])

        existing = set(level0)
        for part, rest, reply in zip(
            parts, others, await run_pipeline(self.redis, build), strict=True
        ):
            if isinstance(reply, Exception):
                raise reply
            existing.update(rest[int(i) - len(part) - 1] for i in reply)
        return existing

    async def backlog(self, queues: Sequence[str]) -> int:
        """Messages of ``queues`` not finished yet: ready, held by any worker (acked
        entries are deleted, so a stream holds only these) or delayed, whenever due."""
        pipe = self.redis.pipeline(transaction=False)
        for queue in queues:
            for level in range(LEVELS):
                pipe.xlen(self.keys.stream(queue, level))
                pipe.zcard(self.keys.delayed(queue, level))
        async with bounded():
            return sum(int(n) for n in await execute_pipeline(pipe))

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
            return cast("list[bytes | None]", await execute_pipeline(pipe))

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
                payload_of(reply[i + 2]),
                int(reply[i + 3]),
            )
            for i in range(at, len(reply), 4)
        ]
        return Claimed(list(reply[:n]), entries, int(reply[n]), mine)

    async def pending_summaries(
        self, streams: Sequence[str], chunk: int = 1000
    ) -> dict[str, dict[str, int]]:
        """Per level stream with pending entries, its pending entries per consumer
        (``pending.lua`` per ``chunk`` streams, per slot group on a cluster, in one
        pipeline); streams that hold nothing pending are left out."""
        groups = by_slot(streams) if self.cluster else [list(streams)]
        parts = [g[i : i + chunk] for g in groups for i in range(0, len(g), chunk)]

        def build(pipe: Pipeline) -> None:
            for part in parts:
                SCRIPTS.queue(pipe, "pending", part, [GROUP])

        out: dict[str, dict[str, int]] = {}
        for part, reply in zip(parts, await run_pipeline(self.redis, build), strict=True):
            if isinstance(reply, Exception):
                raise reply
            i = 0
            while i < len(reply):
                key, n = part[int(reply[i]) - 1], int(reply[i + 1])
                names = reply[i + 2 : i + 2 + 2 * n]
                out[key] = {_text(names[j]): int(names[j + 1]) for j in range(0, len(names), 2)}
                i += 2 + 2 * n
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
            Entry(stream, queue, level, reply[i], payload_of(reply[i + 1]), int(reply[i + 2]))
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

    async def forget_consumers_of(
        self, queues: Sequence[Sequence[str]], consumer: str, chunk: int = 1000
    ) -> None:
        """``forget_consumers(streams, 0, only=consumer)`` for each queue's level
        streams in ``queues``: one pipeline per ``chunk`` queues (a worker leaving
        1,000 queues makes one round trip, not 1,000)."""
        for i in range(0, len(queues), chunk):
            part = queues[i : i + chunk]

            def build(pipe: Pipeline, part: Sequence[Sequence[str]] = part) -> None:
                for streams in part:
                    SCRIPTS.queue(pipe, "forget_consumers", list(streams), [GROUP, 0, "", consumer])

            for reply in await run_pipeline(self.redis, build):
                if isinstance(reply, Exception):
                    raise reply

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


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value

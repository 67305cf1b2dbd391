"""Job records on a message's behalf: starting attempts, and writing their
outcomes, retry states and progress — fenced — and then acking (completions).

Part of ``Streams`` (a base class of it): everything here needs the worker's
Redis client, key space and whether job records may be batched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._core.event import Note
from .events import queue_event
from .keys import GROUP
from .lanes import Lanes
from .scripts import SCRIPTS, run_scripts
from .types import Completion, Done, Entry, Finish, Start, Wrote

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace
    from .scripts import Commands

_WROTE = tuple(Wrote)
"""``Wrote`` by value: indexing skips the enum's constructor (two calls per job)."""
assert [w.value for w in _WROTE] == list(range(len(_WROTE))), "Wrote values must be 0..n-1"
ACK_CHUNK = 500  # entries per ack.lua call: stays far below Lua's unpack() limit
RECORD_CHUNK = 500  # jobs per start_many / complete call


class Outcomes:
    redis: Redis
    keys: Keyspace
    batch_records: bool
    events_maxlen: int
    _lanes: Lanes | None = None

    @property
    def lanes(self) -> Lanes:
        """Kept connections for the per-message scripts (start, complete, ack)."""
        if self._lanes is None:
            self._lanes = Lanes(self.redis)
        return self._lanes

    async def start(self, worker: str, started_ms: int, starts: Sequence[Start]) -> list[Any]:
        """Mark each job running for a new attempt (start.lua), in one round trip,
        with its ``started`` event when events are on.
        A reply is the attempt number (run it), bytes (its stored outcome: it
        already ended) or an exception (not started: hand the entry back)."""

        if not self.batch_records:

            def build(pipe: Commands) -> None:
                for s in starts:
                    SCRIPTS.queue(
                        pipe,
                        "start",
                        [self.keys.job(s.job_id)],
                        [worker, started_ms, s.task, s.queue, s.enqueued_ms],
                    )

            started = await run_scripts(self.redis, self.lanes, build)
            if self.events_maxlen:
                # The record is in the job's slot, the event in the queue's: the
                # events of the jobs that did start follow in a second round trip.
                notes = [
                    (s.queue, Note("started", s.job_id, s.task, r))
                    for s, r in zip(starts, started, strict=True)
                    if isinstance(r, int)
                ]
                if notes:
                    await self.write_events(worker, notes)
            return started

        # One start_many per chunk: a batch costs a command, not one per job.
        chunks = [starts[i : i + RECORD_CHUNK] for i in range(0, len(starts), RECORD_CHUNK)]
        on = bool(self.events_maxlen)

        def build_many(pipe: Commands) -> None:
            for chunk in chunks:
                # Events off: no event arguments (each costs Redis ~0.2 µs).
                per_job = [
                    a
                    for s in chunk
                    for a in (
                        (self.keys.job(s.job_id), s.task, s.queue, s.enqueued_ms)
                        + ((self.keys.events(s.queue), s.job_id) if on else ())
                    )
                ]
                args = [worker, started_ms, self.events_maxlen, *per_job]
                SCRIPTS.queue(pipe, "start_many", [], args)

        replies: list[Any] = []
        many = await run_scripts(self.redis, self.lanes, build_many)
        for chunk, reply in zip(chunks, many, strict=True):
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

        on = bool(self.events_maxlen)

        def args(c: Completion) -> tuple[Any, ...]:
            e, f, n = c.entry, c.finish, c.note if on else None
            # Events off: no event arguments (each costs Redis ~0.2 µs).
            ev: tuple[Any, ...] = ()
            if n is not None:
                ev = (self.keys.events(e.queue), n.task, n.detail)
            elif on:
                ev = ("", "", "")
            if f is None:
                return (e.stream, e.id, e.deliveries, "", "", 0, "", "", 0, 0, "", "", 0, *ev)
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
                *ev,
            )

        def build(pipe: Commands) -> None:
            for chunk in chunks:
                flat = [a for c in chunk for a in args(c)]
                SCRIPTS.queue(pipe, "complete", [], [GROUP, worker, self.events_maxlen, *flat])

        out: list[Done | Exception] = []
        written = await run_scripts(self.redis, self.lanes, build)
        for chunk, reply in zip(chunks, written, strict=True):
            if isinstance(reply, Exception):
                out.extend([reply] * len(chunk))
            else:
                out.extend(
                    Done(_WROTE[reply[i]], bool(reply[i + 1])) for i in range(0, len(reply), 2)
                )
        return out

    async def _complete_by_slot(
        self, worker: str, items: Sequence[Completion]
    ) -> list[Done | Exception]:
        # 1. outcomes (record slots) and unique locks (queue slots)
        def build_writes(pipe: Commands) -> None:
            for c in items:
                if c.finish is not None:
                    f = c.finish
                    if f.unlock is not None:
                        SCRIPTS.queue(pipe, "unlock", [f.unlock[0]], [f.job_id, f.unlock[1]])
                    SCRIPTS.queue(
                        pipe, "finish", [self.keys.job(f.job_id)], self._finish_args(worker, f)
                    )

        replies = (
            iter(await run_scripts(self.redis, self.lanes, build_writes))
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
        # 2. acks of what is confirmed (queue slots), fenced per delivery, with
        # the events of the outcomes written
        to_ack = [
            c.entry
            for c, w in zip(items, wrote, strict=True)
            if not isinstance(w, Exception) and w != Wrote.FENCED
        ]
        notes = [
            (c.entry.queue, c.note)
            for c, w in zip(items, wrote, strict=True)
            if c.note is not None and w == Wrote.WRITTEN
        ]
        acked = await self.ack(worker, to_ack, notes if self.events_maxlen else ())
        return [
            w if isinstance(w, Exception) else Done(w, acked.get(c.entry.key, False))
            for c, w in zip(items, wrote, strict=True)
        ]

    async def ack(
        self,
        worker: str,
        entries: Sequence[Entry],
        notes: Sequence[tuple[str, Note]] = (),
    ) -> dict[tuple[str, bytes], bool]:
        """Ack and delete entries this worker still holds (ack.lua, fenced per
        delivery); maps each entry's key to whether it was acked. An entry whose
        ack was refused is missing from the map. ``notes`` (queue, event) are
        written in the same round trip (event.lua)."""
        by_stream: dict[str, list[Entry]] = {}
        for entry in entries:
            by_stream.setdefault(entry.stream, []).append(entry)
        calls = [
            (stream, group[i : i + ACK_CHUNK])
            for stream, group in by_stream.items()
            for i in range(0, len(group), ACK_CHUNK)
        ]
        if not calls and not notes:
            return {}

        def build(pipe: Commands) -> None:
            for stream, chunk in calls:
                flat = [a for e in chunk for a in (e.id, e.deliveries)]
                SCRIPTS.queue(pipe, "ack", [stream], [GROUP, worker, *flat])
            for queue, note in notes:
                queue_event(pipe, self.keys, self.events_maxlen, queue, note, worker)

        out: dict[tuple[str, bytes], bool] = {}
        replies = (await run_scripts(self.redis, self.lanes, build))[: len(calls)]
        for (_, chunk), reply in zip(calls, replies, strict=True):
            if not isinstance(reply, Exception):
                out.update((e.key, bool(r)) for e, r in zip(chunk, reply, strict=True))
        return out

    async def write_outcome(self, worker: str, finish: Finish) -> tuple[Wrote, bytes | None]:
        """Write one outcome without acking its message (finish.lua, fenced): a
        workflow step's, before its follow-ups, or a dead letter's failure.
        Returns what it did and, when the job had already ended, the stored outcome.

        A unique job's lock is released once the write is confirmed (not when
        fenced: the attempt that holds the job still runs)."""
        reply = await SCRIPTS.call(
            self.redis, "finish", [self.keys.job(finish.job_id)], self._finish_args(worker, finish)
        )
        wrote = Wrote(int(reply[0]))
        if finish.unlock is not None and wrote != Wrote.FENCED:
            lock, keep_ms = finish.unlock
            await SCRIPTS.call(self.redis, "unlock", [lock], [finish.job_id, keep_ms])
        return wrote, (reply[1] if wrote == Wrote.FINAL else None)

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

    async def progress(
        self,
        job_id: str,
        worker: str,
        attempt: int,
        report: bytes,
        event: tuple[Entry, Note] | None = None,
    ) -> bool:
        """Store and publish a running attempt's progress report (progress.lua,
        fenced); False when the job ended or a later attempt holds it. ``event``
        (the attempt's delivery, its ``progress`` event) is written in the same
        round trip, fenced by that delivery (event.lua)."""
        args = [worker, attempt, report, self.keys.progress_channel(job_id)]
        if event is None or not self.events_maxlen:
            stored = await SCRIPTS.call(self.redis, "progress", [self.keys.job(job_id)], args)
            return bool(stored)
        entry, note = event

        def build(pipe: Commands) -> None:
            SCRIPTS.queue(pipe, "progress", [self.keys.job(job_id)], args)
            queue_event(pipe, self.keys, self.events_maxlen, entry.queue, note, worker, entry)

        stored, _ = await run_scripts(self.redis, self.lanes, build)
        if isinstance(stored, Exception):
            raise stored
        return bool(stored)

    async def write_events(self, worker: str, notes: Sequence[tuple[str, Note]]) -> None:
        """Write events (queue, note) whose transition was confirmed already."""

        def build(pipe: Commands) -> None:
            for queue, note in notes:
                queue_event(pipe, self.keys, self.events_maxlen, queue, note, worker)

        await run_scripts(self.redis, self.lanes, build)

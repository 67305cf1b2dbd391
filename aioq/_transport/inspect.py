"""Read-only views of queues and jobs for ``App.status()`` / ``App.jobs()``, and
``purge`` (dropping ready messages no worker has taken).

Everything is read from what Redis already keeps: stream lengths, the consumer
groups' pending summaries and last-delivered ids (XINFO GROUPS), the delayed
sets, the dead-letter streams and the job records. A whole status is a few
pipelined round trips, whatever the number of queues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import msgspec

from .._core.message import Message, decode_message
from .._core.status import JobSummary, LevelStatus, QueueStatus
from .cluster import execute_pipeline
from .connection import bounded
from .keys import GROUP, LEVELS
from .scripts import SCRIPTS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace

SPLIT_SAMPLE = 1000
"""Delayed-set members decoded per level to tell retries from scheduled jobs;
beyond this many the split is extrapolated from the earliest-due ones."""
SCAN_MAX = 10_000
"""Most delayed-set members ``jobs(state=scheduled|retrying)`` reads per level."""
PURGE_CHUNK = 1000
PREVIEW = 80


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _ms_of(entry_id: Any) -> int:
    return int(_text(entry_id).split("-", 1)[0])


def _when(ms: Any) -> datetime | None:
    if ms is None or ms == b"" or ms == "":
        return None
    return datetime.fromtimestamp(int(ms) / 1000, tz=UTC)


def _group(reply: Any) -> dict[str, Any] | None:
    """Our group's row of an XINFO GROUPS reply (None: no stream or no group)."""
    if isinstance(reply, Exception) or not reply:
        return None
    for row in reply:
        if _text(row.get("name", b"")) == GROUP:
            return dict(row)
    return None


def preview(msg: Message | None) -> str:
    """``(1, 'x', key=2)``, cut to ``PREVIEW`` characters."""
    if msg is None:
        return "?"
    parts = [repr(a) for a in msg.args] + [f"{k}={v!r}" for k, v in msg.kwargs.items()]
    text = "(" + ", ".join(parts) + ")"
    return text if len(text) <= PREVIEW else text[: PREVIEW - 1] + "…"


Rows = list[tuple[bytes, dict[bytes, bytes]]]


def _rows(reply: Any) -> Rows:
    return cast("Rows", list(reply or []))


def _decode(payload: Any) -> Message | None:
    try:
        return decode_message(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, TypeError):
        return None


@dataclass
class _Level:
    length: int = 0
    delayed: int = 0
    group: dict[str, Any] | None = None
    ready: int = 0
    running: int = 0
    retrying: int = 0
    oldest: float | None = None
    consumers: int = 0
    delivered: int = 0


@dataclass
class _Queue:
    name: str
    dead: int = 0
    levels: list[_Level] = field(default_factory=lambda: [_Level() for _ in range(LEVELS)])


async def queue_status(
    redis: Redis, keys: Keyspace, queues: Sequence[str]
) -> tuple[list[QueueStatus], int]:
    """Counts of every queue in ``queues``, and Redis' time (ms) when they were
    read: two round trips in all."""
    found = [_Queue(q) for q in queues]
    pipe = redis.pipeline(transaction=False)
    pipe.execute_command("TIME")  # (a cluster pipeline refuses pipe.time())
    for q in found:
        pipe.xlen(keys.dead(q.name))
        for level in range(LEVELS):
            pipe.xlen(keys.stream(q.name, level))
            pipe.zcard(keys.delayed(q.name, level))
            pipe.xinfo_groups(keys.stream(q.name, level))
    async with bounded():
        replies = await execute_pipeline(pipe, raise_on_error=False)
    secs, micros = replies[0]
    now = int(secs) * 1000 + int(micros) // 1000
    i = 1
    for q in found:
        q.dead = _count(replies[i])
        i += 1
        for lv in q.levels:
            _fill(lv, *replies[i : i + 3])
            i += 3
    await _details(redis, keys, found, now)
    return [_summarise(q) for q in found], now


def _count(reply: Any) -> int:
    return 0 if isinstance(reply, Exception) else int(reply)


def _fill(lv: _Level, length: Any, delayed: Any, groups: Any) -> None:
    lv.length = _count(length)
    lv.delayed = _count(delayed)
    lv.group = _group(groups)
    lv.running = int(lv.group["pending"]) if lv.group else 0
    lv.consumers = int(lv.group["consumers"]) if lv.group else 0
    lv.delivered = int(lv.group.get("entries-read") or 0) if lv.group else 0
    # acked entries are deleted: the stream holds ready + pending entries only
    lv.ready = max(0, lv.length - lv.running)


async def _details(redis: Redis, keys: Keyspace, found: list[_Queue], now: int) -> None:
    """Second round trip: the oldest ready entry of each level, and the delayed
    members that tell retries from scheduled jobs."""
    pipe = redis.pipeline(transaction=False)
    asked: list[tuple[_Level, str]] = []
    for q in found:
        for level, lv in enumerate(q.levels):
            if lv.ready:
                last = _text(lv.group["last-delivered-id"]) if lv.group else "0-0"
                pipe.xrange(keys.stream(q.name, level), min=f"({last}", max="+", count=1)
                asked.append((lv, "oldest"))
            if lv.delayed:
                pipe.zrange(keys.delayed(q.name, level), 0, SPLIT_SAMPLE - 1)
                asked.append((lv, "split"))
    if not asked:
        return
    async with bounded():
        replies = await execute_pipeline(pipe, raise_on_error=False)
    for (lv, what), reply in zip(asked, replies, strict=True):
        if isinstance(reply, Exception) or not reply:
            continue
        if what == "oldest":
            lv.oldest = max(0.0, (now - _ms_of(reply[0][0])) / 1000)
        else:
            retries = sum(1 for m in reply if (msg := _decode(m)) is not None and msg.retry)
            lv.retrying = round(retries * lv.delayed / len(reply))


def _summarise(q: _Queue) -> QueueStatus:
    levels = [
        LevelStatus(
            priority=level,
            ready=lv.ready,
            scheduled=lv.delayed - lv.retrying,
            running=lv.running,
            retrying=lv.retrying,
            oldest_ready_age_s=lv.oldest,
        )
        for level, lv in enumerate(q.levels)
        if lv.length or lv.delayed
    ]
    ages = [lv.oldest for lv in q.levels if lv.oldest is not None]
    return QueueStatus(
        name=q.name,
        ready=sum(lv.ready for lv in q.levels),
        scheduled=sum(lv.delayed - lv.retrying for lv in q.levels),
        running=sum(lv.running for lv in q.levels),
        retrying=sum(lv.retrying for lv in q.levels),
        dead=q.dead,
        oldest_ready_age_s=max(ages) if ages else None,
        consumers=max((lv.consumers for lv in q.levels), default=0),
        levels=levels if len(levels) > 1 or (levels and levels[0].priority) else [],
        delivered=sum(lv.delivered for lv in q.levels),
    )


# -- listing jobs ---------------------------------------------------------------


async def _records(redis: Redis, keys: Keyspace, ids: Sequence[str | None]) -> list[dict[str, Any]]:
    """The records of ``ids`` (field names as text), in one round trip."""
    pipe = redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(keys.job(job_id or "-"))
    async with bounded():
        replies = await execute_pipeline(pipe, raise_on_error=False)
    return [
        {} if isinstance(r, Exception) or not r else {_text(k): v for k, v in r.items()}
        for r in replies
    ]


def _summary(
    state: str,
    queue: str,
    level: int,
    msg: Message | None,
    rec: dict[str, Any],
    **extra: Any,
) -> JobSummary:
    return JobSummary(
        id=msg.id if msg else None,
        state=state,
        queue=queue,
        task=msg.task if msg else None,
        args=preview(msg),
        priority=level,
        attempts=int(rec.get("attempts", 0)),
        enqueued_at=_when(msg.enqueued_ms) if msg else None,
        started_at=_when(rec.get("started_ms")),
        **extra,
    )


async def list_jobs(
    redis: Redis, keys: Keyspace, state: str, queues: Sequence[str], limit: int
) -> list[JobSummary]:
    """Up to ``limit`` jobs in ``state`` of ``queues``, most urgent level first."""
    out: list[JobSummary] = []
    for queue in queues:
        if len(out) >= limit:
            break
        want = limit - len(out)
        if state == "failed":
            out.extend(await _dead(redis, keys, queue, want))
            continue
        for level in reversed(range(LEVELS)):
            want = limit - len(out)
            if want <= 0:
                break
            if state == "running":
                out.extend(await _running(redis, keys, queue, level, want))
            elif state == "queued":
                out.extend(await _queued(redis, keys, queue, level, want))
            else:
                out.extend(await _delayed(redis, keys, queue, level, want, state == "retrying"))
    return out


async def _running(
    redis: Redis, keys: Keyspace, queue: str, level: int, limit: int
) -> list[JobSummary]:
    stream = keys.stream(queue, level)
    async with bounded():
        try:
            pending = await redis.xpending_range(stream, GROUP, min="-", max="+", count=limit)
        except Exception:  # no stream or no group: nothing runs there
            return []
    if not pending:
        return []
    pipe = redis.pipeline(transaction=False)
    for p in pending:
        pipe.xrange(stream, min=p["message_id"], max=p["message_id"], count=1)
    async with bounded():
        entries = await execute_pipeline(pipe, raise_on_error=False)
    msgs = [
        _decode(e[0][1].get(b"m")) if not isinstance(e, Exception) and e else None for e in entries
    ]
    recs = await _records(redis, keys, [m.id if m else None for m in msgs])
    return [
        _summary(
            "running",
            queue,
            level,
            msg,
            rec,
            worker=_text(p["consumer"]),
            deliveries=int(p["times_delivered"]),
            entry=_text(p["message_id"]),
        )
        for p, msg, rec in zip(pending, msgs, recs, strict=True)
    ]


async def _queued(
    redis: Redis, keys: Keyspace, queue: str, level: int, limit: int
) -> list[JobSummary]:
    stream = keys.stream(queue, level)
    async with bounded():
        try:
            group = _group(await redis.xinfo_groups(stream))
        except Exception:  # no such stream
            return []
        last = _text(group["last-delivered-id"]) if group else "0-0"
        rows = _rows(await redis.xrange(stream, min=f"({last}", max="+", count=limit))
    msgs = [_decode(fields.get(b"m")) for _, fields in rows]
    # a retry that came back from the delayed set has attempts behind it
    recs = await _records(redis, keys, [m.id if m else None for m in msgs]) if rows else []
    return [
        _summary("queued", queue, level, msg, rec, entry=_text(entry_id))
        for (entry_id, _), msg, rec in zip(rows, msgs, recs, strict=True)
    ]


async def _delayed(
    redis: Redis, keys: Keyspace, queue: str, level: int, limit: int, retrying: bool
) -> list[JobSummary]:
    key = keys.delayed(queue, level)
    out: list[tuple[Message | None, float]] = []
    start = 0
    while len(out) < limit and start < SCAN_MAX:
        async with bounded():
            rows = cast(
                "list[tuple[bytes, float]]",
                await redis.zrange(key, start, start + 999, withscores=True),
            )
        if not rows:
            break
        start += len(rows)
        for member, score in rows:
            msg = _decode(member)
            if (msg is not None and msg.retry > 0) == retrying:
                out.append((msg, score))
                if len(out) >= limit:
                    break
    recs = await _records(redis, keys, [m.id if m else None for m, _ in out]) if out else []
    state = "retrying" if retrying else "scheduled"
    return [
        _summary(state, queue, level, msg, rec, due_at=_when(int(score)))
        for (msg, score), rec in zip(out, recs, strict=True)
    ]


async def _dead(redis: Redis, keys: Keyspace, queue: str, limit: int) -> list[JobSummary]:
    async with bounded():
        rows = _rows(await redis.xrange(keys.dead(queue), min="-", max="+", count=limit))
    msgs = [_decode(fields.get(b"m")) for _, fields in rows]
    recs = await _records(redis, keys, [m.id if m else None for m in msgs])
    return [
        _summary(
            "failed",
            queue,
            msg.priority if msg else 0,
            msg,
            rec,
            entry=_text(entry_id),
            reason=_text(fields.get(b"reason", b"")),
        )
        for (entry_id, fields), msg, rec in zip(rows, msgs, recs, strict=True)
    ]


# -- purge ----------------------------------------------------------------------


async def purge_ready(redis: Redis, keys: Keyspace, queue: str) -> list[tuple[str | None, str]]:
    """Drop every ready message of ``queue`` that no worker has taken (purge.lua,
    atomic per chunk; running ones are untouched), up to each level stream's last
    entry when the purge began. Returns (job id or None, task) of each dropped."""
    dropped: list[tuple[str | None, str]] = []
    for level in reversed(range(LEVELS)):
        stream = keys.stream(queue, level)
        async with bounded():
            top = await redis.xrevrange(stream, max="+", min="-", count=1)
        if not top:
            continue
        last = _text(top[0][0])
        while True:
            payloads = await SCRIPTS.call(redis, "purge", [stream], [GROUP, last, PURGE_CHUNK])
            for payload in payloads:
                msg = _decode(payload)
                dropped.append((msg.id, msg.task) if msg else (None, ""))
            if len(payloads) < PURGE_CHUNK:
                break
    return dropped


# -- one job's message ----------------------------------------------------------

FIND_MAX = 2000
"""Entries ``find_message`` reads per level stream, delayed set and dead-letter stream."""


class Found(msgspec.Struct, frozen=True, kw_only=True):
    """Where a job's message sits now, and the message itself."""

    place: str
    """``stream`` (ready or running), ``delayed`` or ``dead``."""
    entry: str | None
    """Its stream or dead-letter entry id (None in a delayed set)."""
    message: Message
    due_ms: int | None = None
    """A delayed message's due time."""
    dead_at_ms: int | None = None
    reason: str | None = None
    """Why it was dead-lettered."""


async def find_message(redis: Redis, keys: Keyspace, queue: str, job_id: str) -> Found | None:
    """The message of ``job_id`` on ``queue``, from the first ``FIND_MAX`` entries of
    each of the queue's streams, delayed sets and its dead letters (one round trip);
    None when it is not there (a finished job's message is deleted when acked)."""
    pipe = redis.pipeline(transaction=False)
    for level in range(LEVELS):
        pipe.xrange(keys.stream(queue, level), min="-", max="+", count=FIND_MAX)
        pipe.zrange(keys.delayed(queue, level), 0, FIND_MAX - 1, withscores=True)
    pipe.xrange(keys.dead(queue), min="-", max="+", count=FIND_MAX)
    async with bounded():
        raw = await execute_pipeline(pipe, raise_on_error=False)
        replies = [[] if isinstance(r, Exception) else r for r in raw]
    for i in range(LEVELS):
        for entry_id, fields in _rows(replies[2 * i]):
            if (msg := _decode(fields.get(b"m"))) is not None and msg.id == job_id:
                return Found(place="stream", entry=_text(entry_id), message=msg)
        for member, score in replies[2 * i + 1] or []:
            if (msg := _decode(member)) is not None and msg.id == job_id:
                return Found(place="delayed", entry=None, message=msg, due_ms=int(score))
    for entry_id, fields in _rows(replies[-1]):
        if (msg := _decode(fields.get(b"m"))) is not None and msg.id == job_id:
            at = fields.get(b"at")
            return Found(
                place="dead",
                entry=_text(entry_id),
                message=msg,
                dead_at_ms=int(at) if at else None,
                reason=_text(fields.get(b"reason", b"")),
            )
    return None

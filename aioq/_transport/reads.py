"""Reading new messages: the fetch, the idle waits and the stream discovery.

Part of ``Streams`` (a base class of it). On one Redis server a read spans
every level stream of every queue of the worker in one command (``fetch.lua``,
one XREAD / XREADGROUP BLOCK). On Redis Cluster the queues hash to different
slots (the level streams of one queue share its ``{queue}`` tag, so one slot), and
a command may only touch one slot: each read is made per slot group
(``cluster.by_slot``) instead:

- the fetch calls ``fetch.lua`` once per slot group, one after the other, each
  for what the previous ones left of ``count`` (never more than free slots),
  and merges their entries by priority level. Within a queue the most urgent
  level still comes first; across queues of different slots it does within
  one read's groups, and the worker rotates the queues' order on every read;
- the idle waits (XREAD BLOCK, which takes nothing) block on every slot group
  at once and return with the first that wakes (the others are cancelled:
  nothing was taken, so nothing is lost);
- a blocking XREADGROUP (which takes what arrives) is made only when the
  streams share a slot (``one_read``); otherwise the worker waits with XREAD
  and fetches.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from .cluster import by_slot, execute_pipeline
from .connection import OPERATION_TIMEOUT, bounded
from .keys import GROUP, LEVELS, PAYLOAD_FIELD
from .scripts import SCRIPTS, run_scripts
from .types import Entry

if TYPE_CHECKING:
    from collections.abc import Sequence

    from redis.asyncio import Redis

    from .keys import Keyspace
    from .lanes import Lanes


class Reads:
    redis: Redis
    keys: Keyspace
    cluster: bool
    if TYPE_CHECKING:

        @property
        def lanes(self) -> Lanes: ...  # Outcomes.lanes: the kept connections

    def one_read(self, streams: Sequence[str]) -> bool:
        """Whether one command can read all of ``streams`` (always on one server;
        on a cluster, when they share a slot)."""
        return not self.cluster or len(by_slot(streams)) <= 1

    def _groups(self, keys: Sequence[str]) -> list[list[str]]:
        return by_slot(keys) if self.cluster else [list(keys)]

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
        value holds a mark for every stream looked at that has nothing new left
        (it had none, or was read short of ``count``): the id after which its next
        entry will appear (``wait``), ``b""`` when it does not exist yet."""
        entries: list[Entry] = []
        marks: dict[str, bytes] = {}
        for group in self._groups(list(streams)):
            left = count - len(entries)
            if left <= 0:
                break
            got, seen = await self._fetch_group(
                consumer, {k: streams[k] for k in group}, left, ascending
            )
            entries.extend(got)
            marks.update(seen)
        if self.cluster:  # several groups: merge by level (sorted() is stable)
            entries = sorted(entries, key=lambda e: e.level if ascending else -e.level)
        return entries, marks

    async def _fetch_group(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, ascending: bool
    ) -> tuple[list[Entry], dict[str, bytes]]:
        keys = list(streams)
        levels = [streams[k][1] for k in keys]
        args = [GROUP, consumer, count, int(ascending), *levels]
        # On a kept connection (lanes.py): redis-py's command path cost more
        # calls than the rest of a read (profiled: issue 14).
        (reply,) = await run_scripts(
            self.redis, self.lanes, lambda pipe: SCRIPTS.queue(pipe, "fetch", keys, args)
        )
        if isinstance(reply, Exception):
            raise reply
        m = int(reply[0])
        marks = {keys[int(reply[i]) - 1]: reply[i + 1] for i in range(1, 2 * m + 1, 2)}
        out: list[Entry] = []
        for i in range(2 * m + 1, len(reply), 3):
            key = keys[int(reply[i]) - 1]
            queue, level = streams[key]
            out.append(Entry(key, queue, level, reply[i + 1], payload_of(reply[i + 2])))
        return out, marks

    async def peek(self, marks: dict[str, bytes], block_ms: int | None = None) -> list[str]:
        """The streams that have an entry after their mark (XREAD COUNT 1, which
        takes nothing), waiting up to ``block_ms`` for one when given (then Redis
        answers with the first stream that gets one; on a cluster, the first slot
        group that does)."""
        if not marks:
            return []
        groups = self._groups(list(marks))
        if len(groups) == 1:
            return await self._peek_group(marks, block_ms)
        parts = [{k: marks[k] for k in group} for group in groups]
        if block_ms is None:
            replies = await asyncio.gather(*(self._peek_group(p, None) for p in parts))
            return [k for reply in replies for k in reply]
        tasks = [asyncio.ensure_future(self._peek_group(p, block_ms)) for p in parts]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            task.result()  # raises an outage error, as a single read would
        return [k for task in done for k in task.result()]

    async def _peek_group(self, marks: dict[str, bytes], block_ms: int | None) -> list[str]:
        timeout = OPERATION_TIMEOUT + (block_ms or 0) / 1000
        async with bounded(timeout):
            reply: Any = await self.redis.xread(
                {k: v or b"0-0" for k, v in marks.items()},
                count=1,
                block=block_ms,
            )
        return [k.decode() if isinstance(k, bytes) else str(k) for k, _ in reply or ()]

    async def existing(self, keys: Sequence[str], chunk: int = 500) -> list[str]:
        """Which of ``keys`` exist: one multi-key EXISTS per ``chunk`` keys (of one
        slot, on a cluster), then one per key of the chunks that counted any."""
        groups = self._groups(keys)
        chunks = [g[i : i + chunk] for g in groups for i in range(0, len(g), chunk)]
        pipe = self.redis.pipeline(transaction=False)
        for part in chunks:
            pipe.execute_command("EXISTS", *part)
        async with bounded():
            counts = await execute_pipeline(pipe)
            found = [k for part, n in zip(chunks, counts, strict=True) if n for k in part]
            if not found:
                return []
            pipe = self.redis.pipeline(transaction=False)
            for key in found:
                pipe.exists(key)
            return [k for k, n in zip(found, await execute_pipeline(pipe), strict=True) if n]

    async def wait(self, after: dict[str, bytes], block_ms: int) -> None:
        """Block until one of the streams gets an entry after the given id, or
        ``block_ms`` pass (XREAD takes nothing: ``fetch`` then takes it). A
        stream that does not exist yet (id ``b""``) is watched from its start."""
        await self.peek(after, block_ms)

    async def read_blocking(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, block_ms: int
    ) -> list[Entry]:
        """XREADGROUP ``>`` on existing level streams (key → (queue, level)),
        blocking up to ``block_ms``; at most ``count`` entries per stream. The
        streams must be readable by one command (``one_read``)."""
        if not self.cluster:
            return await self._read_raw(consumer, streams, count, block_ms)
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

    async def _read_raw(
        self, consumer: str, streams: dict[str, tuple[str, int]], count: int, block_ms: int
    ) -> list[Entry]:
        """``read_blocking`` on one server: the XREADGROUP on a kept connection
        (lanes.py), its reply taken raw. It is on an idle worker's path from a
        message's arrival to its start; redis-py's command path (pool checkout,
        retry wrapper, observability hooks, the reply turned into dicts) cost
        more calls there than the rest of the read."""
        keys = list(streams)
        command = (
            "XREADGROUP",
            *("GROUP", GROUP, consumer, "COUNT", count, "BLOCK", block_ms, "STREAMS"),
            *keys,
            *(">",) * len(keys),
        )
        async with bounded(block_ms / 1000 + OPERATION_TIMEOUT):
            (reply,) = await self.lanes.run([command])
        if isinstance(reply, Exception):
            raise reply
        out: list[Entry] = []
        # RESP3 (redis-py's default) answers with a map, RESP2 with pairs
        for stream, items in reply.items() if isinstance(reply, dict) else reply or ():
            key = stream.decode() if isinstance(stream, bytes) else stream
            queue, level = streams[key]
            for entry_id, fields in items:
                out.append(Entry(key, queue, level, entry_id, payload_of(fields)))
        return out


def payload_of(fields: Any) -> bytes | None:
    """The ``m`` field of an entry's flat field list (None when it has none)."""
    if not fields:
        return None
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == PAYLOAD_FIELD:
            value: bytes = fields[i + 1]
            return value
    return None

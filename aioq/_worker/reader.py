"""Reading from many queues at a cost that follows the work, not the queue count.

A worker on a few queues (at most ``SMALL`` queues) reads all their level streams
on every fetch. With more, ``ManyQueues`` keeps track of which level streams can
have work:

- **hot** streams are read by ``fetch.lua``: at start every stream that exists
  (``ensure_groups`` says which, as it creates the groups), later those a watch,
  a peek or a discovery found something in; at most ``FETCH_KEYS`` + 2 × free slots per
  fetch, most urgent first, a served stream going to the back of its level (round
  robin). A fetch that leaves nothing new in a stream (finds none, or reads it
  short of the count) returns its *mark* (the id after which its next entry will
  appear) and the stream turns cold; a stream that does not exist yet turns
  *missing*.
- **cold** streams are watched, never read: when nothing is hot the worker blocks
  in ``XREAD`` (takes nothing) from their marks, split in up to ``WATCH_PARTS``
  parts of whole queues, each on its own connection; the stream that wakes its
  part turns hot, and only that part is armed again. While hot streams keep it
  busy, a non-blocking ``XREAD`` over the cold ones (a *peek*, every
  ``peek_every``) lets their new messages in too.
- **missing** streams (levels never used) are watched too while the watch stays
  small (``WATCH_ALL`` keys); beyond that, a multi-key ``EXISTS`` now and then
  (``discover_every``) finds the ones that appeared.

An ``XREAD`` from a mark stale by a few entries (delivered since to another
worker) only wakes the reader early: the fetch that follows finds nothing and
renews the mark. Nothing is ever read past a mark, so no message is missed; the
price of many queues is one ``XREAD`` over one part's cold streams per wake-up,
and the parts' timeouts, which the watch's longer block (``watch_block``) keeps
rare while idle.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry

SMALL = 16
"""Up to this many queues, every fetch reads every level stream (no bookkeeping)."""
WATCH_ALL = 4000
"""Most keys one blocking watch carries with the missing streams included."""
PEEK_PER_KEY = 0.0002
"""Seconds between two peeks per cold stream (at least ``PEEK_MIN``): a peek costs
Redis about 0.3 µs per key and the worker about 1.5 µs (the command built and sent),
so both stay under 1 % of a core while busy (every 0.2 s on 1,000 cold streams)."""
PEEK_MIN = 0.05
WATCH_PARTS = 16
WATCH_PART_MIN = 32
"""The watch is split into at most ``WATCH_PARTS`` parts of at least
``WATCH_PART_MIN`` queues each (``ManyQueues.watch``)."""
WATCH_PER_KEY = 0.003
"""Seconds of blocking per watched key (at least the worker's ``block``): registering
a blocked XREAD costs Redis about 1–1.6 µs per key, paid once per wake-up or timeout,
so an idle watch's timeouts cost about 0.05 % of a core whatever the number of keys.
The reader's own wait ends earlier when a discovery or a recovery pass is due (the
parts stay armed meanwhile)."""
FETCH_KEYS = 16
"""A fetch names at most ``FETCH_KEYS + 2 × free slots`` hot streams, the most urgent
first: a stream it looks at either gives entries or turns cold, so that many are
enough, and a fetch's cost stays independent of the number of hot streams."""
DISCOVER_PER_KEY = 0.0001
"""Seconds between two looks for new level streams, per missing stream (at least
the worker's ``block``)."""


class ManyQueues:
    def __init__(
        self,
        streams: WorkerBroker,
        queues: list[str],
        block_ms: int,
        existing: Collection[str] | None = None,
    ) -> None:
        """``existing``: the level streams known to exist at start (``ensure_groups``);
        the others start *missing*. None: every stream starts hot, and the first
        fetch looks at all of them."""
        self.streams = streams
        self.block_ms = block_ms
        self.order = {
            streams.level_stream(q, level): (q, level)
            for q in queues
            for level in reversed(range(10))
        }
        """Every level stream: key → (queue, level), queues in the worker's order."""
        self.missing: set[str] = set()
        if existing is None:
            self.hot: dict[str, None] = dict.fromkeys(self.order)
        else:
            self.hot = {k: None for k in self.order if k in existing}
            self.missing.update(k for k in self.order if k not in existing)
        self._hot_levels: dict[int, int] = {}
        """How many hot streams each level has (a fetch sorts only across levels)."""
        for key in self.hot:
            level = self.order[key][1]
            self._hot_levels[level] = self._hot_levels.get(level, 0) + 1
        self.marks: dict[str, bytes] = {}
        self.changed: set[str] = set()
        """Streams *touched* (turned hot, or named by a fetch) since the recovery scan
        last took them (``take_changed``): a cold stream not touched since a
        pending-summary scan that found nothing pending in it can hold nothing
        pending now (``Recovery``)."""
        self._looked = False
        self._next_peek = 0.0
        self._next_discovery = time.monotonic() + self._discover_every()
        self._watching: anyio.CancelScope | None = None
        parts = max(1, min(WATCH_PARTS, len(queues) // WATCH_PART_MIN))
        part_of = {q: i % parts for i, q in enumerate(queues)}
        self._parts: list[list[str]] = [[] for _ in range(parts)]
        """The watch's parts: every level stream of a queue in the same one."""
        for key, (queue, _) in self.order.items():
            self._parts[part_of[queue]].append(key)
        self._armed: dict[int, asyncio.Task[None]] = {}
        self._woke = asyncio.Event()
        self._failed: BaseException | None = None

    def _discover_every(self) -> float:
        return max(self.block_ms / 1000, DISCOVER_PER_KEY * len(self.missing))

    def existing(self) -> list[str]:
        """Level streams known (or assumed, until a fetch looks) to exist."""
        return [k for k in self.order if k not in self.missing]

    def take_changed(self) -> set[str]:
        changed, self.changed = self.changed, set()
        return changed

    def heat(self, keys: list[str]) -> None:
        self.changed.update(keys)
        for key in keys:
            self.marks.pop(key, None)
            self.missing.discard(key)
            if key not in self.hot:
                self.hot[key] = None
                level = self.order[key][1]
                self._hot_levels[level] = self._hot_levels.get(level, 0) + 1

    def _cool(self, marks: dict[str, bytes]) -> None:
        for key, mark in marks.items():
            if key in self.hot:
                del self.hot[key]
                self._hot_levels[self.order[key][1]] -= 1
            if mark:
                self.marks[key] = mark
            else:
                self.missing.add(key)

    def watched(self) -> int:
        """How many keys the watch waits on: the cold streams from their marks, and
        the missing ones from the start while the whole stays within ``WATCH_ALL``."""
        total = len(self.marks) + len(self.missing)
        return total if total <= WATCH_ALL else len(self.marks)

    def watch_block(self, watched: int) -> int:
        return max(self.block_ms, int(WATCH_PER_KEY * 1000 * watched))

    def _peek_every(self) -> float:
        return max(PEEK_MIN, PEEK_PER_KEY * len(self.marks))

    def _part_marks(self, part: int) -> dict[str, bytes]:
        """What one part of the watch waits on (see ``watched``): its cold streams from
        their marks, its missing ones from the start."""
        keys = self._parts[part]
        marks = {k: self.marks[k] for k in keys if k in self.marks}
        if len(self.marks) + len(self.missing) <= WATCH_ALL:
            marks.update((k, b"0-0") for k in keys if k in self.missing)
        return marks

    async def _watch_part(self, part: int) -> None:
        """One part's blocking watch, armed again on every timeout, until one of its
        streams gets an entry: it turns hot and wakes the reader."""
        try:
            while marks := self._part_marks(part):
                woke = await self.streams.peek(marks, self.watch_block(self.watched()))
                if woke:
                    self.heat(woke)
                    self._woke.set()
                    return
        except Exception as exc:  # an outage: the reader raises it
            self._failed = exc
            self._woke.set()
        finally:
            del self._armed[part]

    async def watch(self, watched: int, until: float | None = None) -> None:
        """Block until a watched stream gets an entry (it turns hot), the watch's
        block time (for ``watched`` keys) passes, ``until`` (monotonic: the recovery's
        next due pass; at least ``PEEK_MIN`` from now), the next discovery (when
        missing streams are not watched) or ``stop()``.

        The watch is split into parts (``WATCH_PARTS``, each with whole queues), each
        one blocking XREAD on its own connection: an entry wakes only its part, and
        only that part is armed again, so a wake-up costs Redis the keys of one part
        (registering and unregistering a blocked XREAD is about 1 µs per key), not
        of every cold stream. A part stays armed across watches (its own timeout
        re-arms it) while the reader serves the streams that turned hot."""
        for part in range(len(self._parts)):
            if part not in self._armed:  # a part with nothing to watch ends at once
                self._armed[part] = asyncio.ensure_future(self._watch_part(part))
        with anyio.CancelScope() as scope:
            self._watching = scope
            wait = self.watch_block(watched) / 1000
            if self.missing and len(self.marks) + len(self.missing) > WATCH_ALL:
                # missing streams not watched: the next discovery is due by then
                until = min(until or self._next_discovery, self._next_discovery)
            if until is not None:  # the parts stay armed: waking early costs Redis nothing
                wait = min(wait, max(PEEK_MIN, until - time.monotonic()))
            with anyio.move_on_after(wait):
                await self._woke.wait()
            # Just woken for one stream: no need to peek at the others at once.
            self._next_peek = time.monotonic() + self._peek_every()
        self._watching = None
        self._woke.clear()
        failed, self._failed = self._failed, None
        if failed is not None:
            raise failed

    def stop(self) -> None:
        """End a watch in progress (the worker stops reading)."""
        if self._watching is not None:
            self._watching.cancel()
        for task in self._armed.values():
            task.cancel()

    async def fetch(
        self, consumer: str, n: int, ascending: bool, stopping: bool
    ) -> tuple[list[Entry], int | None]:
        """Up to ``n`` entries of the hot streams (after a peek and a discovery when
        due). Returns (entries, None), or ([], keys to watch) when nothing is hot."""
        now = time.monotonic()
        if self.hot and self.marks and now >= self._next_peek:
            self._next_peek = now + self._peek_every()
            self.heat(await self.streams.peek(self.marks))
        if self.missing and now >= self._next_discovery:
            self._next_discovery = now + self._discover_every()
            self.heat(await self.streams.existing(sorted(self.missing)))
        if self.hot:
            # Most urgent first (sorted() is stable: the served-last order stays
            # within a level; fetch.lua then has nothing to sort), and only as many
            # as the fetch can use, except on the first: it looks at every stream
            # that may exist, so that idle ones turn cold (or missing) in one call.
            cap = FETCH_KEYS + 2 * n if self._looked else len(self.hot)
            self._looked = True
            if sum(1 for c in self._hot_levels.values() if c) > 1:
                hot = sorted(self.hot, key=self._level_key(ascending))[:cap]
            else:  # one level: already in order
                hot = list(itertools.islice(self.hot, cap))
            entries, marks = await self.streams.fetch_streams(
                consumer, {k: self.order[k] for k in hot}, n, ascending
            )
            # After the reply: a scan begun before it may have seen these streams'
            # pending lists as they were before this fetch delivered from them.
            self.changed.update(hot)
            self._cool(marks)
            for key in dict.fromkeys(e.stream for e in entries):
                if key in self.hot:  # served: to the back of its level (round robin)
                    del self.hot[key]
                    self.hot[key] = None
            if entries or stopping or self.hot:
                return entries, None
        return [], self.watched()

    def _level_key(self, ascending: bool) -> Callable[[str], int]:
        order = self.order
        if ascending:
            return lambda k: order[k][1]
        return lambda k: -order[k][1]


class FewQueues:
    """The reads of a worker of at most ``SMALL`` queues (``Worker._read``): every
    fetch reads every level stream, in an order that rotates on every read.

    A blocking read that left the worker's only existing level stream empty is
    followed by another blocking read at once, without ``fetch.lua`` (one round
    trip less per message while nearly idle), for up to ``block``: a level's
    first message then waits for the next fetch. Several streams keep
    ``fetch.lua``: it takes the most urgent first.
    """

    def __init__(self, queues: list[str], block_ms: int) -> None:
        self.queues = queues
        self.block_ms = block_ms
        self._rotate = 0
        self._drained: tuple[dict[str, tuple[str, int]], float] | None = None
        """Streams a blocking read left empty, and when fetch.lua last looked."""

    async def read(
        self,
        streams: WorkerBroker,
        levels: dict[str, tuple[str, int]],
        consumer: str,
        n: int,
        ascending: bool,
        stopping: bool,
    ) -> list[Entry]:
        drained, now = self._drained, time.monotonic()
        self._drained = None
        after: dict[str, bytes] = {}
        if (
            drained is None
            or now - drained[1] > self.block_ms / 1000
            or n < len(drained[0])
            or stopping
        ):
            start = self._rotate % len(self.queues)
            self._rotate += 1
            queues = self.queues[start:] + self.queues[:start]
            entries, after = await streams.fetch(consumer, queues, n, ascending)
            if entries or stopping:
                return entries
            existing = {key: levels[key] for key, entry_id in after.items() if entry_id}
            drained = (existing, now)
        existing = drained[0]
        if existing and n >= len(existing) and streams.one_read(list(existing)):
            count = n // len(existing)
            entries = await streams.read_blocking(consumer, existing, count, self.block_ms)
            if len(existing) == 1 and len(entries) < count:
                self._drained = drained  # the only stream is empty: block again at once
            return entries
        await streams.wait(after, self.block_ms)
        return []

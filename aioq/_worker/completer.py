"""Batched completion: every outcome finished in the same loop tick is written,
acked and published together.

An executor keeps its concurrency slot until its completion is confirmed (it
awaits ``submit``), so a crash can never leave more finished-but-unacked work
than the worker's concurrency.

Rules (docs/reliability.md):

- **Fenced.** Each outcome write checks, inside the script, that this attempt
  still holds the job; each ack, that this delivery still holds the entry. A
  worker that stalled past its lease writes nothing over its successor's work.
- **Ack last, on confirmed writes only.** Every reply is read. An item whose
  write Redis refused (out of memory, a moved slot, …) is not acked: it is
  written again after a backoff, and until then it stays pending, so a crash
  meanwhile redelivers it rather than losing it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, TypeVar

import anyio

from .._transport.connection import RedisError
from .._transport.types import Completion, Done, Wrote

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._core.event import Note
    from .._transport.broker import WorkerBroker
    from .._transport.types import Entry, Finish

log = logging.getLogger("aioq.worker")

T = TypeVar("T")

MAX_BACKOFF = 5.0


class Completer:
    def __init__(self, streams: WorkerBroker, worker: str) -> None:
        self._streams = streams
        self._worker = worker
        self._queue: list[tuple[Completion, asyncio.Future[Done]]] = []
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        """The worker's loop, once ``run`` started (on Python 3.11, every
        ``get_running_loop()`` is a ``getpid`` system call: once per task, it showed
        in the profile)."""

    async def submit(self, entry: Entry, finish: Finish | None, note: Note | None = None) -> Done:
        """Queue an outcome (or a bare ack when ``finish`` is None) and wait until
        Redis confirmed it; returns what was written and whether it was acked.
        ``note``: the outcome's lifecycle event, written if the outcome is."""
        loop = self._loop or asyncio.get_running_loop()
        done: asyncio.Future[Done] = loop.create_future()
        self._queue.append((Completion(entry, finish, note), done))
        self._wake.set()
        return await done

    async def write_now(self, finish: Finish) -> tuple[Wrote, bytes | None]:
        """Write one outcome without acking its message (the caller acks it
        later): what was done, and the stored outcome when the job had ended."""
        return await persist(
            lambda: self._streams.write_outcome(self._worker, finish),
            f"the outcome of job {finish.job_id}",
        )

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        delay = 0.1
        failing: BaseException | None = None
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._queue = self._queue, []
            if not batch:
                continue
            try:
                replies = await self._streams.complete(self._worker, [c for c, _ in batch])
            except Exception as exc:  # Redis unreachable: nothing is known written
                replies = [exc] * len(batch)
            again: list[tuple[Completion, asyncio.Future[Done]]] = []
            for (item, fut), reply in zip(batch, replies, strict=True):
                if isinstance(reply, Exception):
                    again.append((item, fut))
                    if failing is None:
                        failing = reply
                        log.warning(
                            "cannot write %d completion(s) (%s: %s); they stay pending "
                            "and are written again until Redis takes them",
                            len(batch),
                            type(reply).__name__,
                            reply,
                            exc_info=not isinstance(reply, RedisError),
                        )
                elif not fut.done():
                    fut.set_result(reply)
            if again:
                self._queue[:0] = again
                self._wake.set()
                await anyio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            elif failing is not None:
                log.info("completions are being written again")
                failing, delay = None, 0.1


async def persist(op: Callable[[], Awaitable[T]], what: str) -> T:
    """Run a write until it succeeds: what finished while Redis is away (or full,
    or busy) is written once it takes writes again, not dropped. Logged once per
    outage; retries back off up to 5 s."""
    delay = 0.1
    failing = False
    while True:
        try:
            result = await op()
        except Exception as exc:
            if not failing:
                log.warning(
                    "cannot write %s (%s: %s); retrying until Redis takes it",
                    what,
                    type(exc).__name__,
                    exc,
                    exc_info=not isinstance(exc, RedisError),  # a bug, not Redis: show where
                )
                failing = True
        else:
            if failing:
                log.info("wrote %s after the outage", what)
            return result
        await anyio.sleep(delay)
        delay = min(delay * 2, MAX_BACKOFF)

"""Batched completion: every outcome finished in the same loop tick is written,
acked and published in one pipeline.

An executor keeps its concurrency slot until its completion is written (it
awaits ``submit``), so a crash can never leave more finished-but-unacked work
than the worker's concurrency.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from .._transport.connection import CONNECTION_ERRORS

if TYPE_CHECKING:
    from .._transport.streams import Finish, Streams

log = logging.getLogger("aioq.worker")

T = TypeVar("T")


Fence = Callable[[list[tuple[str, bytes]]], Awaitable[set[tuple[str, bytes]]]]
"""Given (queue, entry id) pairs, return those this worker no longer owns."""


class Completer:
    def __init__(
        self,
        streams: Streams,
        fence: Fence | None = None,
        stale: Callable[[], bool] | None = None,
    ) -> None:
        self._streams = streams
        self._fence = fence
        self._stale = stale
        self._finishes: list[Finish] = []
        self._acks: list[tuple[str, bytes]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()

    def fence_with(self, fence: Fence, stale: Callable[[], bool]) -> None:
        self._fence, self._stale = fence, stale

    async def submit(self, stream: str, entry_id: bytes, finish: Finish | None) -> None:
        """Queue an outcome (or a bare ack when ``finish`` is None) and wait until
        Redis has it."""
        if finish is not None:
            self._finishes.append(finish)
        self._acks.append((stream, entry_id))
        done = asyncio.get_running_loop().create_future()
        self._waiters.append(done)
        self._wake.set()
        await done

    async def write_now(self, finish: Finish) -> None:
        """Write one outcome without acking its message (the caller acks it another way)."""
        await self._write([finish], [])

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            finishes, self._finishes = self._finishes, []
            acks, self._acks = self._acks, []
            waiters, self._waiters = self._waiters, []
            if self._fence is not None and self._stale is not None and self._stale():
                finishes, acks = await self._fenced(finishes, acks)
            await self._write(finishes, acks)
            for done in waiters:
                if not done.done():
                    done.set_result(None)

    async def _fenced(
        self, finishes: list[Finish], acks: list[tuple[str, bytes]]
    ) -> tuple[list[Finish], list[tuple[str, bytes]]]:
        """After a stall longer than the lease allows (GC pause, SIGSTOP, a blocked
        loop), another worker may own these messages now: write nothing for those.
        The other worker's own outcome is the one that counts."""
        assert self._fence is not None
        lost = await persist(lambda: self._fence(acks), "a lease check")  # type: ignore[misc]
        if lost:
            log.warning(
                "dropping %d completion(s) of messages other workers took over "
                "while this worker was stalled",
                len(lost),
            )
        return (
            [f for f in finishes if (f.stream, f.entry_id) not in lost],
            [a for a in acks if a not in lost],
        )

    async def _write(self, finishes: list[Finish], acks: list[tuple[str, bytes]]) -> None:
        what = f"{len(acks)} completion(s)" if acks else f"the outcome of job {finishes[0].job_id}"
        await persist(lambda: self._streams.finish(finishes, acks), what)


async def persist(op: Callable[[], Awaitable[T]], what: str) -> T:
    """Run a write until it succeeds: what finished while Redis is away is
    written once it is back, not dropped. Retries back off up to 5 s."""
    delay = 0.1
    failing = False
    while True:
        try:
            result = await op()
        except CONNECTION_ERRORS as exc:
            if not failing:
                log.warning("cannot write %s (%s); retrying until Redis is back", what, exc)
                failing = True
        except Exception:
            log.exception("writing %s failed; retrying", what)
        else:
            if failing:
                log.info("wrote %s after the outage", what)
            return result
        await anyio.sleep(delay)
        delay = min(delay * 2, 5.0)

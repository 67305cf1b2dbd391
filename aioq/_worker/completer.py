"""Batched completion: every outcome finished in the same loop tick is written,
acked and published in one pipeline.

An executor keeps its concurrency slot until its completion is written (it
awaits ``submit``), so a crash can never leave more finished-but-unacked work
than the worker's concurrency.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import anyio

from .._transport.connection import CONNECTION_ERRORS

if TYPE_CHECKING:
    from .._transport.streams import Finish, Streams

log = logging.getLogger("aioq.worker")


class Completer:
    def __init__(self, streams: Streams) -> None:
        self._streams = streams
        self._finishes: list[Finish] = []
        self._acks: list[tuple[str, bytes]] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._wake = asyncio.Event()

    async def submit(self, queue: str, entry_id: bytes, finish: Finish | None) -> None:
        """Queue an outcome (or a bare ack when ``finish`` is None) and wait until
        Redis has it."""
        if finish is not None:
            self._finishes.append(finish)
        self._acks.append((queue, entry_id))
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
            await self._write(finishes, acks)
            for done in waiters:
                if not done.done():
                    done.set_result(None)

    async def _write(self, finishes: list[Finish], acks: list[tuple[str, bytes]]) -> None:
        """Write until it succeeds: results finished while Redis is away are
        written once it is back, not dropped."""
        delay = 0.1
        failing = False
        while True:
            try:
                await self._streams.finish(finishes, acks)
            except CONNECTION_ERRORS as exc:
                if not failing:
                    log.warning("cannot write %d completions (%s); retrying", len(acks), exc)
                    failing = True
            except Exception:
                log.exception("writing %d completions failed; retrying", len(acks))
            else:
                if failing:
                    log.info("completions written after the outage")
                return
            await anyio.sleep(delay)
            delay = min(delay * 2, 5.0)

"""A send whose connection breaks after Redis applied it is never sent again: a
message added twice is a job run twice (docs/reliability.md, "The Redis client
sends no command twice")."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis

import aioq

APPLIED = 0.3
"""Seconds the proxy lets Redis work on a request before it cuts the connection."""


@contextlib.asynccontextmanager
async def reply_eating_proxy(upstream_port: int, marker: bytes) -> AsyncIterator[int]:
    """A loopback TCP proxy to Redis that, once a request holding ``marker`` went
    through, lets Redis apply it and closes the connection without passing the
    reply back (Redis killed, or the network cut, just after it applied the
    command). Everything before (the connection's handshake) passes both ways."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream_port)
        cut = asyncio.Event()

        async def replies() -> None:
            while not cut.is_set():
                data = await up_reader.read(1 << 16)
                if not data or cut.is_set():
                    return
                writer.write(data)
                await writer.drain()

        back = asyncio.create_task(replies())
        try:
            while data := await reader.read(1 << 16):
                if marker in data:
                    cut.set()
                up_writer.write(data)
                await up_writer.drain()
                if cut.is_set():
                    await asyncio.sleep(APPLIED)
                    break
        finally:
            back.cancel()
            for w in (up_writer, writer):
                w.close()
                with contextlib.suppress(ConnectionError):
                    await w.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        server.close()


async def test_a_send_cut_after_redis_applied_it_is_not_sent_again(
    redis_url: str, prefix: str, sync_redis: redis.Redis
) -> None:
    host_port = redis_url.split("://", 1)[1].split("/", 1)[0]
    db = redis_url.rsplit("/", 1)[1] if redis_url.count("/") >= 3 else "0"
    async with reply_eating_proxy(int(host_port.rsplit(":", 1)[1]), b"XADD") as port:
        app = aioq.App(f"redis://127.0.0.1:{port}/{db}", prefix=prefix, operation_timeout=2.0)

        @app.task(name="noop")
        async def noop() -> None: ...

        with pytest.raises(aioq.BrokerUnavailable):
            await noop.kiq()
        await app.aclose()
    stream = aioq.App(redis_url, prefix=prefix).keys.stream("default")
    assert sync_redis.xlen(stream) == 1  # applied once, not twice

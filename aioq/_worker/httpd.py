"""A tiny HTTP/1.0 server on asyncio streams, for probes and scrapes only.

``/livez``, ``/readyz`` and ``/metrics`` need a GET answered with a status and a
short body; a web framework would be a dependency for nothing. Each request is
read (request line and headers, bounded), answered, and the connection closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

log = logging.getLogger("aioq.http")

Response = tuple[int, str, bytes]
"""(status, content type, body)."""

REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
READ_TIMEOUT = 5.0
"""Seconds a client gets to send its request line and headers."""
MAX_HEADER_LINES = 100


async def _answer(
    routes: Mapping[str, Callable[[], Awaitable[Response]]],
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        async with asyncio.timeout(READ_TIMEOUT):
            request = (await reader.readline()).decode("latin-1").split()
            for _ in range(MAX_HEADER_LINES):
                if (await reader.readline()).strip() == b"":
                    break
        if len(request) < 2:
            return
        method, path = request[0], request[1].split("?", 1)[0]
        route = routes.get(path)
        if route is None:
            status, ctype, body = 404, "text/plain", b"not found\n"
        elif method not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain", b"GET only\n"
        else:
            status, ctype, body = await route()
        head = (
            f"HTTP/1.0 {status} {REASONS.get(status, '')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode("latin-1")
        writer.write(head if method == "HEAD" else head + body)
        await writer.drain()
    except (TimeoutError, ConnectionError, ValueError):
        pass
    except Exception:
        log.exception("HTTP handler failed")
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(
    host: str, port: int, routes: Mapping[str, Callable[[], Awaitable[Response]]]
) -> AsyncIterator[asyncio.Server]:
    """Serve ``routes`` on ``host:port`` for the duration of the block."""
    server = await asyncio.start_server(
        lambda r, w: _answer(routes, r, w), host, port, reuse_address=True
    )
    try:
        yield server
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)

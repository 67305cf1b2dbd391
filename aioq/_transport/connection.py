"""Opening Redis connections and turning connection failures into aioq errors."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from redis import exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import Connection

from ..errors import BrokerUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger("aioq")

CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,
    rex.TimeoutError,
    rex.AuthenticationError,
    rex.BusyLoadingError,
    OSError,
)


OPERATION_TIMEOUT = 15.0
"""Seconds one pipeline (a batch of commands) may take before Redis counts as unreachable."""


try:
    from hiredis import pack_command as _pack
except ImportError:  # hiredis is a dependency, but keep working without it
    _pack = None  # type: ignore[assignment]


class PackedConnection(Connection):
    """A plain TCP connection that packs commands with hiredis (in C).

    redis-py's asyncio connection packs every command in Python; profiling a
    worker put that at ~20 % of its CPU, and hiredis packs the same bytes about
    seven times faster.
    """

    def pack_command(self, *args: Any) -> list[bytes]:
        assert _pack is not None
        first = args[0]
        if isinstance(first, str) and " " in first:  # "SCRIPT LOAD", "XGROUP CREATE"…
            args = (*first.split(), *args[1:])
        return [_pack(args)]


@asynccontextmanager
async def bounded(seconds: float = OPERATION_TIMEOUT) -> AsyncIterator[None]:
    """Bound one whole Redis operation; running out counts as a connection failure."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise rex.TimeoutError(f"Redis did not answer within {seconds:g}s") from None


def _keepalive() -> dict[int, int]:
    # Detect a dead peer in ~25 s instead of the kernel's default two hours.
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, k): v for k, v in wanted.items() if hasattr(socket, k)}


def connect(url: str, **options: Any) -> Redis:
    """A client with a connection pool for ``url``. Does no I/O.

    No per-read socket timeout by default: redis-py would wrap every single
    reply of a pipeline in its own timeout, which profiling showed to be the
    largest cost of a worker. Dead connections are found by TCP keepalive
    instead, and aioq bounds whole operations itself (``OPERATION_TIMEOUT``).
    """
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("socket_timeout", None)
    options.setdefault("socket_keepalive", True)
    options.setdefault("socket_keepalive_options", _keepalive())
    options.setdefault("health_check_interval", 30)
    # A blocking pool: past max_connections a caller waits for a free connection
    # instead of failing with "Too many connections" (redis-py's default pool).
    options.setdefault("max_connections", 100)
    options.setdefault("timeout", OPERATION_TIMEOUT)
    if url.startswith("redis://") and _pack is not None:
        options.setdefault("connection_class", PackedConnection)
    return Redis.from_pool(BlockingConnectionPool.from_url(url, **options))  # closes it too


def describe(url: str) -> str:
    """``url`` without its password, for log lines and errors."""
    if "@" in url:
        scheme, rest = url.split("://", 1) if "://" in url else ("redis", url)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


@asynccontextmanager
async def broker_errors(url: str) -> AsyncIterator[None]:
    """Re-raise Redis connection failures as ``BrokerUnavailable``."""
    try:
        yield
    except TimeoutError:
        raise  # the caller's own deadline (a builtin TimeoutError is also an OSError)
    except rex.AuthenticationError as exc:
        raise BrokerUnavailable(f"Redis at {describe(url)} refused the credentials: {exc}") from exc
    except rex.ResponseError as exc:
        if "NOAUTH" in str(exc) or "WRONGPASS" in str(exc):
            raise BrokerUnavailable(
                f"Redis at {describe(url)} needs valid credentials: {exc}"
            ) from exc
        raise
    except CONNECTION_ERRORS as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {describe(url)}: {exc}") from exc


async def wait_until_reachable(redis: Redis, url: str, timeout: float) -> None:
    """PING until Redis answers, logging one line per failed try.

    Raises ``BrokerUnavailable`` once ``timeout`` seconds have passed.
    """
    deadline = time.monotonic() + timeout
    delay = 0.25
    while True:
        try:
            async with broker_errors(url):
                await redis.ping()
            return
        except BrokerUnavailable as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailable(f"{exc} (gave up after {timeout:g}s)") from None
            log.warning("%s; retrying in %.1fs", exc, min(delay, left))
            await anyio.sleep(min(delay, left))
            delay = min(delay * 2, 5.0)


MIN_REDIS = (7, 0)


async def check_server_version(redis: Redis, url: str) -> None:
    """Refuse a Redis older than 7.0 (XAUTOCLAIM's deleted-entry reply, and the
    stream semantics aioq relies on), with one clear error."""
    info = await redis.info("server")
    version = str(info.get("redis_version", "0"))
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_REDIS:
        raise BrokerUnavailable(
            f"Redis at {describe(url)} is version {version}; aioq needs 7.0 or newer"
        )

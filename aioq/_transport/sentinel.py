"""Redis Sentinel: the master's address comes from the sentinels, asked again on
every (re)connect, so a failover is an outage that ends by itself.

``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]`` names the
sentinels (any of them will do) and the monitored service; ``rediss+sentinel://``
speaks TLS to the data nodes and to the sentinels. The credentials in the URL are the
data nodes'; the sentinels' own (``requirepass`` in sentinel.conf) go in the app's
``redis_options["sentinel_options"]`` (any redis-py connection argument). A query
string (``?ssl_ca_certs=…&ssl_certfile=…``: redis-py's URL options) applies to the
data nodes, and its ``ssl_*`` options to the sentinels too.

What a failover looks like from here: the old master dies (connections refused,
reset) or is demoted (Sentinel kills every client of it; a write it still receives
answers ``READONLY``, which redis-py's Sentinel connection turns into a connection
error). Either is an outage to the worker's loops (``OUTAGE_ERRORS``); the next
connection asks the sentinels and reaches the new master once they have switched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff
from redis.connection import parse_url as redis_parse_url
from redis.exceptions import RedisError
from redis.retry import Retry as SyncRetry
from redis.sentinel import Sentinel as SyncSentinel
from redis.sentinel import SentinelConnectionPool as SyncSentinelPool

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import redis

__all__ = ["SCHEMES", "SentinelURL", "master", "master_sync", "moved", "parse"]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_PORT = 26379
SENTINEL_TIMEOUT = 2.0
"""Seconds a single sentinel may take to answer where the master is (then the next
one is asked): a frozen sentinel must not stall every reconnect for long."""

OPTIONS_KEY = "sentinel_options"
"""The key of ``redis_options`` holding the sentinels' own connection arguments."""


@dataclass(frozen=True)
class SentinelURL:
    """A parsed ``redis+sentinel://`` URL."""

    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False
    options: tuple[tuple[str, Any], ...] = ()
    """The query string's connection options (redis-py's parsing: typed values)."""

    def node_options(self) -> dict[str, Any]:
        """Connection arguments for the data nodes that the URL decides."""
        out: dict[str, Any] = {"db": self.db}
        if self.username is not None:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password
        return out


def parse(url: str) -> SentinelURL | None:
    """``url`` as a Sentinel URL; None when its scheme is not one.

    Raises ``ConfigurationError`` for a Sentinel URL that cannot work (no
    sentinel, no service name, a bad port or db)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        return None
    parts = urlsplit(f"x://{rest}")
    creds, at, hosts = parts.netloc.rpartition("@")
    username = password = None
    if at:
        user, colon, secret = creds.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
    sentinels = tuple(_address(item, url) for item in hosts.split(",") if item.strip())
    if not sentinels:
        raise ConfigurationError(f"{_safe(url)}: name at least one sentinel as host:port")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ConfigurationError(
            f"{_safe(url)}: the path must be /service_name or /service_name/db"
        )
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ConfigurationError(f"{_safe(url)}: the database must be a number")
        db = int(path[1])
    tls = scheme.lower().startswith("rediss")
    return SentinelURL(
        sentinels, unquote(path[0]), db, username, password, tls, _query(parts.query)
    )


def _query(query: str) -> tuple[tuple[str, Any], ...]:
    """A URL's query string as connection options, parsed as redis-py parses a
    ``redis://`` URL's (``socket_timeout=4`` is a float; the address is not there)."""
    if not query:
        return ()
    parsed = redis_parse_url(f"redis://localhost?{query}")  # type: ignore[no-untyped-call]
    return tuple((k, v) for k, v in parsed.items() if k not in ("host", "port"))


def _address(item: str, url: str) -> tuple[str, int]:
    host, colon, port = item.strip().rpartition(":")
    if not colon:
        host, port = port, str(DEFAULT_PORT)
    host = host.strip("[]")  # [::1]:26379
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigurationError(f"{_safe(url)}: bad sentinel address {item!r}")
    return host, int(port)


def _safe(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url


def _sentinel_options(target: SentinelURL, options: dict[str, Any], retry: Any) -> dict[str, Any]:
    """The sentinels' connection arguments: the caller's ``sentinel_options`` over
    short timeouts, keepalive, no retries (``retry``: a sentinel that does not
    answer is left for the next one at once; redis-py's default of 3 retries with
    backoff spent ~4 s on each), and TLS (with the data nodes' certificates) when
    the URL says so."""
    out: dict[str, Any] = {
        "socket_connect_timeout": SENTINEL_TIMEOUT,
        "socket_timeout": SENTINEL_TIMEOUT,
        "socket_keepalive": True,
        "retry": retry,
    }
    if target.tls:
        out["ssl"] = True
        out.update({k: v for k, v in options.items() if k.startswith("ssl_")})
    out.update(options.get(OPTIONS_KEY) or {})
    return out


MASTER_RECHECK = 1.0
"""Seconds between two questions to the sentinels about where the master is, on
connections already open. redis-py asks only when a connection opens (or meets
``READONLY``); but after ``SENTINEL FAILOVER`` the old master stays up and writable
until the sentinels demote it, 8 to 20 s later, and everything written there
meanwhile is lost. Asking again every second moves a pool over within about a
second of the switch."""


def _stale(pool: Any, conn: Any) -> bool:
    """``conn`` is open to a node that is no longer the master."""
    address = pool.master_address
    return address is not None and conn.is_connected and (conn.host, conn.port) != address


class BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool (each new connection asks the sentinels where the
    master is) that, like aioq's other pools, makes callers wait past
    ``max_connections`` instead of failing; it asks the sentinels again every
    ``MASTER_RECHECK`` seconds and reopens a connection to a replaced master
    before handing it out; closing it closes the sentinels' clients."""

    _checked = -1e9

    async def refresh(self) -> None:
        """Ask the sentinels where the master is, unless asked in the last
        ``MASTER_RECHECK`` s; on a change, idle connections to the old one close."""
        now = time.monotonic()
        if now - self._checked >= MASTER_RECHECK:
            self._checked = now
            try:
                await self.get_master_address()  # type: ignore[no-untyped-call]
            except RedisError:
                pass  # sentinels unreachable: keep using the master we know

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        await self.refresh()
        conn = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        if _stale(self, conn):
            await conn.disconnect()
            try:
                await conn.connect()
            except BaseException:
                await self.release(conn)
                raise
        return conn

    async def aclose(self) -> None:
        try:
            await super().aclose()
        finally:
            await self.sentinel_manager.aclose()


async def moved(pool: Any, conn: Any) -> bool:
    """``conn`` of ``pool`` is open to a node the sentinels no longer name as master
    (asking them at most every ``MASTER_RECHECK`` s). Always False for a pool that
    is not a Sentinel pool. For connections made outside the pool (the result
    waiters' pub/sub connection), which ``get_connection`` never sees."""
    if not isinstance(pool, BlockingSentinelPool):
        return False
    await pool.refresh()
    return _stale(pool, conn)


def master(target: SentinelURL, settings: dict[str, Any]) -> Redis:
    """An asyncio client of ``target``'s current master (follows failovers). Does no I/O.

    ``settings`` are the data nodes' connection arguments (``connection_class``
    among them: a ``SentinelManagedConnection`` subclass)."""
    settings = {**settings, **dict(target.options)}  # the URL's win, as in from_url
    sentinel_kwargs = _sentinel_options(target, settings, Retry(NoBackoff(), 0))
    settings = {k: v for k, v in settings.items() if k != OPTIONS_KEY}
    settings.pop("ssl", None)  # the connection class decides TLS
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=sentinel_kwargs
    )
    pool = BlockingSentinelPool(  # type: ignore[no-untyped-call]
        target.service, manager, is_master=True, **settings, **target.node_options()
    )
    return Redis.from_pool(pool)


class ClosingSentinelPool(SyncSentinelPool):
    """redis-py's synchronous Sentinel pool that asks the sentinels again every
    ``MASTER_RECHECK`` seconds (as ``BlockingSentinelPool``); closing it closes
    the sentinels' clients."""

    _checked = -1e9

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        now = time.monotonic()
        if now - self._checked >= MASTER_RECHECK:
            self._checked = now
            try:
                self.get_master_address()  # type: ignore[no-untyped-call]
            except RedisError:
                pass
        conn = super().get_connection(*args, **kwargs)
        if _stale(self, conn):
            conn.disconnect()  # type: ignore[no-untyped-call]
            try:
                conn.connect()  # type: ignore[no-untyped-call]
            except BaseException:
                self.release(conn)
                raise
        return conn

    def close(self) -> None:
        try:
            super().close()
        finally:
            self.sentinel_manager.close()


def master_sync(target: SentinelURL, options: dict[str, Any]) -> redis.Redis:
    """A synchronous client of ``target``'s current master (the heartbeat thread's)."""
    options = {**options, **dict(target.options)}
    sentinel_kwargs = _sentinel_options(target, options, SyncRetry(NoBackoff(), 0))
    options = {k: v for k, v in options.items() if k != OPTIONS_KEY}
    manager = SyncSentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=sentinel_kwargs
    )
    options["ssl"] = target.tls
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        target.service,
        connection_pool_class=ClosingSentinelPool,
        **options,
        **target.node_options(),
    )
    return client

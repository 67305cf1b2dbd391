"""Opening Redis connections and turning connection failures into aioq errors."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import anyio
import redis
from redis import exceptions as rex
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.connection import parse_url as redis_parse_url
from redis.asyncio.sentinel import (
    MasterNotFoundError,
    SentinelManagedConnection,
    SentinelManagedSSLConnection,
)
from redis.sentinel import MasterNotFoundError as SyncMasterNotFoundError

from ..errors import BrokerUnavailable, ConfigurationError
from . import sentinel
from .cluster import cluster_client, info_per_primary, is_cluster
from .tls import SharedSSLContext, plain_to_tls_hint

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

log = logging.getLogger("aioq")


class BusyError(rex.ResponseError):
    """``BUSY``: Redis is running someone's slow script or function and serves no
    other command until it ends (redis-py has no class for this reply)."""


class NoReplicasError(rex.ResponseError):
    """``NOREPLICAS``: the master has fewer in-sync replicas than its
    ``min-replicas-to-write`` asks for, and refuses writes until they are back
    (or until a failover replaced it). Nothing was written."""


OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # includes LOADING (BusyLoadingError) and refused credentials
    rex.TimeoutError,
    BusyError,  # BUSY
    NoReplicasError,  # NOREPLICAS: min-replicas-to-write not met (a replica lags, a failover)
    rex.ReadOnlyError,  # READONLY: a failover made our node a replica
    rex.ClusterDownError,  # CLUSTERDOWN, MASTERDOWN
    rex.TryAgainError,  # TRYAGAIN: a slot is being migrated
    rex.AskError,  # ASK, MOVED: a slot moved
    rex.ClusterError,  # Redis Cluster: redirections exhausted (failover, resharding)
    rex.SlotNotCoveredError,  # Redis Cluster: no node serves the slot yet (not a RedisError!)
    # Redis Cluster: no startup node answered while (re)discovering the slot map
    # ("Redis Cluster cannot be connected"). redis-py raises this class for its
    # own client-side refusals too (cross-slot keys, a bad pipeline): aioq never
    # makes those (tests/unit/test_slots.py), so here it only means an outage.
    rex.RedisClusterException,
    OSError,
)
"""Every error that means "Redis cannot serve us right now", not "aioq did something
wrong": the network, a restart (LOADING), someone's slow script (BUSY), a failover
(READONLY, MASTERDOWN, NOREPLICAS) or a resharding (TRYAGAIN, CLUSTERDOWN, MOVED/ASK). Every loop
of a worker treats them alike: log once, back off, carry on, lose nothing."""

RedisError = rex.RedisError
"""Any error Redis (or the client) raised; the runtime names no redis-py class itself."""
ResponseError = rex.ResponseError
"""An error reply (a script's error, NOGROUP, WRONGTYPE, …)."""
OutOfMemoryError = rex.OutOfMemoryError
"""OOM: Redis is at maxmemory and refuses writes (noeviction)."""

REDIS_ERRORS: tuple[type[BaseException], ...] = (*OUTAGE_ERRORS, rex.RedisError)
"""Outages and every error reply: what a background loop catches so that nothing
Redis says can stop a worker."""

NOT_READY_ERRORS: tuple[type[BaseException], ...] = (
    rex.BusyLoadingError,
    BusyError,
    rex.ClusterDownError,
    rex.TryAgainError,
    rex.SlotNotCoveredError,
)
"""Replies proving Redis is up but cannot serve yet: waiting for it is always right."""

_CODES: tuple[tuple[type[BaseException], str], ...] = (
    (rex.BusyLoadingError, "LOADING"),
    (BusyError, "BUSY"),
    (NoReplicasError, "NOREPLICAS"),
    (rex.ReadOnlyError, "READONLY"),
    (rex.MasterDownError, "MASTERDOWN"),
    (rex.ClusterDownError, "CLUSTERDOWN"),
    (rex.TryAgainError, "TRYAGAIN"),
    (rex.MovedError, "MOVED"),
    (rex.AskError, "ASK"),
    (rex.SlotNotCoveredError, "CLUSTERDOWN"),
)


def outage_text(exc: BaseException) -> str:
    """An outage error for a log line, with Redis' error code (``BUSY …``) when
    it has one (redis-py strips the code from the message)."""
    text = str(exc) or type(exc).__name__
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return text if text.startswith(code) else f"{code} {text}"
    return text


def _with_busy(base: type[Any]) -> type[Any]:
    """A reply parser that raises ``BusyError`` for ``BUSY`` and ``NoReplicasError``
    for ``NOREPLICAS`` (else bare ResponseErrors)."""
    extra = {"BUSY": BusyError, "NOREPLICAS": NoReplicasError}
    return type(
        f"Busy{base.__name__}",
        (base,),
        {"EXCEPTION_CLASSES": {**base.EXCEPTION_CLASSES, **extra}},
    )


def _async_parser() -> type[Any] | None:
    try:
        from redis.asyncio.connection import DefaultParser
    except ImportError:  # pragma: no cover - another redis-py layout
        return None
    return _with_busy(DefaultParser)


def _sync_parser() -> type[Any] | None:
    try:
        from redis.connection import DefaultParser
    except ImportError:  # pragma: no cover - another redis-py layout
        return None
    return _with_busy(DefaultParser)


_ASYNC_PARSER = _async_parser()
SYNC_PARSER = _sync_parser()


OPERATION_TIMEOUT = 15.0
"""Seconds one pipeline (a batch of commands) may take before Redis counts as unreachable."""


try:
    from hiredis import pack_command as _pack
except ImportError:  # hiredis is a dependency, but keep working without it
    _pack = None  # type: ignore[assignment]


class HiredisPacking:
    """Packs commands with hiredis (in C), for any kind of connection.

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


class PackedConnection(HiredisPacking, Connection):
    """``redis://``: TCP."""


class PackedSSLConnection(HiredisPacking, SharedSSLContext, SSLConnection):
    """``rediss://``: TLS (with client certificates when given); one SSL context
    shared by the connections of the same settings (``tls.py``)."""


class PackedUnixConnection(HiredisPacking, UnixDomainSocketConnection):
    """``unix://``: a unix socket."""


class PackedSentinelConnection(HiredisPacking, SentinelManagedConnection):
    """``redis+sentinel://``: TCP to whichever node the sentinels name as master."""


class PackedSentinelSSLConnection(HiredisPacking, SharedSSLContext, SentinelManagedSSLConnection):
    """``rediss+sentinel://``: TLS to whichever node the sentinels name as master."""


_PACKED: dict[type[Any], type[Any]] = {
    Connection: PackedConnection,
    SSLConnection: PackedSSLConnection,
    UnixDomainSocketConnection: PackedUnixConnection,
    SentinelManagedConnection: PackedSentinelConnection,
    SentinelManagedSSLConnection: PackedSentinelSSLConnection,
}


class bounded:  # lower case: used as ``async with bounded():``, like a function
    """Bound one whole Redis operation; running out counts as a connection failure.

    A class, not an ``asynccontextmanager``: it wraps every Redis operation of a
    worker, and the generator machinery cost about twice the calls (profiled)."""

    __slots__ = ("_seconds", "_timeout")

    def __init__(self, seconds: float = OPERATION_TIMEOUT) -> None:
        self._seconds = seconds

    async def __aenter__(self) -> None:
        self._timeout = asyncio.timeout(self._seconds)
        await self._timeout.__aenter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            raise rex.TimeoutError(f"Redis did not answer within {self._seconds:g}s") from None
        if exc_type is not None and issubclass(exc_type, TimeoutError):
            raise rex.TimeoutError(f"Redis did not answer within {self._seconds:g}s") from None


def _keepalive() -> dict[int, int]:
    # Detect a dead peer in ~25 s instead of the kernel's default two hours.
    wanted = {"TCP_KEEPIDLE": 10, "TCP_KEEPINTVL": 5, "TCP_KEEPCNT": 3}
    return {getattr(socket, k): v for k, v in wanted.items() if hasattr(socket, k)}


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes of a Redis Cluster, and the scheme each node speaks."""


@dataclass(frozen=True, slots=True)
class UrlSpec:
    """What an aioq Redis URL names (``parse_url``)."""

    url: str
    """A URL redis-py understands: the server's, or a cluster's first node's (its
    credentials, TLS settings and query string apply to every node)."""
    cluster: bool = False
    nodes: tuple[tuple[str, int], ...] = ()
    """A cluster's startup nodes (host, port); a client finds the others from them."""


def parse_url(url: str, *, cluster: bool = False) -> UrlSpec:
    """Tell what ``url`` names: one Redis server (``redis://``, ``rediss://``,
    ``unix://``) or a Redis Cluster (``redis+cluster://host:port[,host:port…]``,
    ``rediss+cluster://…``, or any ``redis(s)://host:port`` with ``cluster=True``).

    Raises ``ConfigurationError`` for a cluster URL that names no node, a bad
    port or a database other than 0 (a cluster has only database 0)."""
    scheme, sep, rest = url.partition("://")
    if scheme not in CLUSTER_SCHEMES and not cluster:
        return UrlSpec(url)
    if not sep or scheme not in (*CLUSTER_SCHEMES, *CLUSTER_SCHEMES.values()):
        raise ConfigurationError(f"not a Redis Cluster URL: {describe(url)}")
    node_scheme = CLUSTER_SCHEMES.get(scheme, scheme)
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    auth, _, hosts = netloc.rpartition("@")
    nodes: list[tuple[str, int]] = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        host = host.strip("[]")
        if not host:
            raise ConfigurationError(f"Redis Cluster URL names an empty node: {describe(url)}")
        if port and not port.isdigit():
            raise ConfigurationError(f"Redis Cluster URL has a bad port {port!r}: {describe(url)}")
        nodes.append((host, int(port) if port else 6379))
    db = tail.split("?", 1)[0].strip("/")
    if db not in ("", "0"):
        raise ConfigurationError(
            f"a Redis Cluster has only database 0, not {db!r}: {describe(url)}"
        )
    first_host, first_port = nodes[0]
    first = f"[{first_host}]" if ":" in first_host else first_host
    at = f"{auth}@" if auth else ""
    query = tail[tail.index("?") :] if "?" in tail else ""
    return UrlSpec(f"{node_scheme}://{at}{first}:{first_port}{query}", True, tuple(nodes))


def cluster_url(url: str) -> str:
    """``url`` as a cluster URL (``App(url, cluster=True)``): ``redis://h:p`` →
    ``redis+cluster://h:p``; a cluster URL stays as it is."""
    parse_url(url, cluster=True)  # its checks: a bad URL fails here, at App()
    scheme, _, rest = url.partition("://")
    return url if scheme in CLUSTER_SCHEMES else f"{scheme}+cluster://{rest}"


def connect(url: str, **options: Any) -> Redis:
    """A client with a connection pool for ``url``. Does no I/O.

    For a cluster URL, a ``RedisCluster`` (one pool per node). It is typed as
    ``Redis``: it offers the same command methods, and the transport asks
    ``cluster.is_cluster`` where the two differ (pipelines route per slot,
    pub/sub goes through one node, reads are grouped by slot).

    No per-read socket timeout by default: redis-py would wrap every single
    reply of a pipeline in its own timeout, which profiling showed to be the
    largest cost of a worker. Dead connections are found by TCP keepalive
    instead, and aioq bounds whole operations itself (``OPERATION_TIMEOUT``).
    """
    spec = parse_url(url)
    options.setdefault("socket_connect_timeout", 5.0)
    options.setdefault("socket_timeout", None)
    if spec.cluster:
        options.setdefault("socket_keepalive", True)
        options.setdefault("socket_keepalive_options", _keepalive())
        options.setdefault("max_connections", 100)
        if _ASYNC_PARSER is not None:
            options.setdefault("parser_class", _ASYNC_PARSER)
        client = cluster_client(spec.nodes, dict(redis_parse_url(spec.url)), options)
        return cast("Redis", client)
    if not url.startswith("unix:"):  # TCP only (a unix connection refuses the options)
        options.setdefault("socket_keepalive", True)
        options.setdefault("socket_keepalive_options", _keepalive())
    options.setdefault("health_check_interval", 30)
    # A blocking pool: past max_connections a caller waits for a free connection
    # instead of failing with "Too many connections" (redis-py's default pool).
    options.setdefault("max_connections", 100)
    options.setdefault("timeout", OPERATION_TIMEOUT)
    if _ASYNC_PARSER is not None:
        options.setdefault("parser_class", _ASYNC_PARSER)
    # As redis-py's from_url, the URL's own settings (host, TLS files in the query
    # string…) win over the options; but the connection class it picks per scheme
    # is swapped for its hiredis-packing subclass, unless the caller chose one.
    target = sentinel.parse(url)
    if target is not None:
        kind = SentinelManagedSSLConnection if target.tls else SentinelManagedConnection
        settings = {**options, "connection_class": kind}
    else:
        settings = {**options, **redis_parse_url(url)}
    if "connection_class" in options:
        settings["connection_class"] = options["connection_class"]
    elif _pack is not None:
        kind = settings.get("connection_class", Connection)
        settings["connection_class"] = _PACKED.get(kind, kind)
    if target is not None:
        return sentinel.master(target, settings)
    return Redis.from_pool(BlockingConnectionPool(**settings))  # closes it too


def connect_sync(url: str, **options: Any) -> redis.Redis:
    """A synchronous client for ``url`` (the heartbeat thread's). Does no I/O."""
    target = sentinel.parse(url)
    if target is not None:
        return sentinel.master_sync(target, options)
    return redis.Redis.from_url(url, **options)


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
        if isinstance(exc, OUTAGE_ERRORS):  # BUSY, READONLY, NOREPLICAS…: nothing written
            raise BrokerUnavailable(
                f"Redis at {describe(url)} cannot serve this now: {outage_text(exc)}"
            ) from exc
        raise
    except OUTAGE_ERRORS as exc:
        hint = plain_to_tls_hint(url, exc)
        raise BrokerUnavailable(
            f"cannot reach Redis at {describe(url)}: {_text_of(exc)}{hint}"
        ) from exc


def _text_of(exc: BaseException) -> str:
    """``exc`` for an error message: redis-py's "no master found" lists the repr
    of every sentinel client it asked (thousands of characters), cut here."""
    text = str(exc)
    if isinstance(exc, (MasterNotFoundError, SyncMasterNotFoundError)) and " : " in text:
        return text.split(" : ", 1)[0] + ": no sentinel answered"
    return text


async def wait_until_reachable(redis: Redis, url: str, timeout: float) -> None:
    """PING until Redis answers, logging one line per failed try.

    Raises ``BrokerUnavailable`` once Redis has been unreachable for ``timeout``
    seconds. A Redis that answers but cannot serve yet (LOADING a big dataset,
    BUSY with someone's script) is there: it is waited for however long it takes,
    with one log line.
    """
    deadline = time.monotonic() + timeout
    delay = 0.25
    waiting = False
    while True:
        try:
            async with broker_errors(url):
                try:
                    await redis.ping()
                except NOT_READY_ERRORS as exc:
                    if not waiting:
                        log.warning(
                            "Redis at %s is not ready (%s); waiting for it",
                            describe(url),
                            outage_text(exc),
                        )
                        waiting = True
                    deadline = time.monotonic() + timeout  # it is reachable
                    await anyio.sleep(0.25)
                    continue
            if waiting:
                log.info("Redis at %s is ready", describe(url))
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
    for info in await _infos(redis, "server"):
        version = str(info.get("redis_version", "0"))
        parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
        if parts < MIN_REDIS:
            raise BrokerUnavailable(
                f"Redis at {describe(url)} is version {version}; aioq needs 7.0 or newer"
            )


async def _infos(redis: Redis, section: str) -> list[dict[str, Any]]:
    """``INFO section`` of the server, or of every primary of a cluster."""
    if is_cluster(redis):
        return await info_per_primary(redis, section)  # type: ignore[arg-type]
    return [await redis.info(section)]


NOEVICTION = "noeviction"


async def eviction_policy(redis: Redis) -> str | None:
    """Redis' ``maxmemory-policy``, from ``INFO memory``; None when it does not tell.

    INFO, not CONFIG GET: the app's ACL user needs no CONFIG, which would also
    show it every setting of the server (docs/security.md)."""
    try:
        infos = await _infos(redis, "memory")
    except rex.ResponseError:  # NOPERM, unknown command
        return None
    policies = [_text(info.get("maxmemory_policy")) for info in infos]
    # On a cluster every primary must be safe: report the first one that is not.
    unsafe = [p for p in policies if p and p != NOEVICTION]
    return (unsafe or policies or [""])[0] or None


def eviction_problem(url: str, policy: str | None) -> str | None:
    """Why ``policy`` is unsafe for aioq, in one message; None when it is safe."""
    if policy is None or policy == NOEVICTION:
        return None
    return (
        f"Redis at {describe(url)}: maxmemory-policy is {policy}, not {NOEVICTION}. "
        "When memory runs short Redis then deletes keys silently: finished jobs' records "
        "and results (their waiters see 'queued' forever), queued and delayed messages, "
        "unique-job locks and workflow barriers, and aioq cannot tell. With noeviction "
        "a full Redis refuses writes instead, which aioq retries without losing work. "
        "Set `maxmemory-policy noeviction` (CONFIG SET and redis.conf)"
    )


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)

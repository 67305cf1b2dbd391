"""Redis Cluster: the clients, and the few things that differ from one node.

On a cluster every command goes to the primary serving its key's slot; redis-py's
``RedisCluster`` routes each command (and splits a pipeline per node), follows
MOVED/ASK and refreshes its slot map after a failover. What it does not do, and
aioq needs, lives here:

- grouping keys by slot (``by_slot``), for the reads that span a worker's queues
  (one ``fetch.lua`` / XREAD per queue slot instead of one over every queue);
- a plain connection to one node (``node_connection``) for the results' pub/sub
  reader: a classic PUBLISH reaches the subscribers of every node, so any node
  will do, and after a failure the reader moves on to the next one;
- INFO from every primary (``info_per_primary``), for the start-up checks.

And one thing it does that aioq must not let it do: re-send a command. By default
``RedisCluster`` sends a command again after a ConnectionError or TimeoutError,
though Redis may have applied it before the connection broke (a task's HINCRBY
counted twice, a message added twice); and every fifth MOVED reply it closes all
its connections, cutting the replies of commands in flight on them. A fresh
client routes its first commands before it knows the slots, so a burst of
concurrent first commands meets many MOVED replies: the close and the re-send
then applied about one burst in two twice (tests/integration/test_cluster_resends.py).
``cluster_client`` therefore turns both off (``_no_resends``): a command is
applied once or fails, and aioq's own outage handling decides what to retry
(fenced scripts and idempotent writes; a ``kiq()`` raises ``BrokerUnavailable``,
as on one node, whose connections re-send nothing either). MOVED, ASK and
TRYAGAIN are still followed: those replies mean the command was not applied.
Its re-run of a failed pipeline was also what made it read the slot map again
after a pipeline lost its node (a primary killed, then replaced by its replica);
``execute_pipeline`` does that instead, as redis-py does after a single command.

The rest of the transport calls a ``RedisCluster`` through the same command
methods as a single-node ``redis.asyncio.Redis`` (both implement redis-py's
command mixins); ``connect`` hands it out typed as ``Redis`` for that reason, and
the few places that must tell them apart ask ``is_cluster``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import redis as sync_redis
from redis import exceptions as rex
from redis.asyncio import RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.crc import key_slot

from .tls import share_contexts

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from redis.asyncio.client import Pipeline
    from redis.asyncio.connection import AbstractConnection

__all__ = [
    "by_slot",
    "cluster_client",
    "execute_pipeline",
    "info_per_primary",
    "is_cluster",
    "node_connection",
    "slot",
    "sync_cluster_client",
]


def slot(key: str | bytes) -> int:
    """Redis Cluster's slot of ``key`` (CRC16 of the key or of its ``{hash tag}``)."""
    return key_slot(key.encode() if isinstance(key, str) else key)


def by_slot(keys: Iterable[str]) -> list[list[str]]:
    """``keys`` grouped by slot, in order of each slot's first key, keys in the
    order given within a group."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(slot(key), []).append(key)
    return list(groups.values())


def is_cluster(redis: object) -> bool:
    """Whether ``redis`` is a cluster client (asyncio or sync)."""
    return isinstance(redis, (RedisCluster, sync_redis.RedisCluster))


def _accepted(cls: type[Any], options: dict[str, Any]) -> dict[str, Any]:
    """The options ``cls.__init__`` takes (a cluster client takes no pool or
    connection class: it makes one pool per node itself). redis-py's synchronous
    ``RedisCluster`` takes the connection options (TLS, credentials, timeouts) as
    ``**kwargs`` and keeps those it knows: all of them are given to it (filtering
    on its named parameters dropped them, and the heartbeat thread's client then
    spoke plain TCP to TLS nodes)."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(options)
    return {k: v for k, v in options.items() if k in params}


def _tls(settings: dict[str, Any]) -> dict[str, Any]:
    """redis-py's URL settings for a ``rediss://`` node, as cluster client options."""
    out = {k: v for k, v in settings.items() if k not in ("host", "port", "db", "connection_class")}
    cls = settings.get("connection_class")
    if cls is not None and "SSL" in cls.__name__:
        out["ssl"] = True
    return out


def _no_resends() -> dict[str, Any]:
    """redis-py options of aioq's asyncio cluster client that no ``redis_options``
    override: with them a command is applied once or fails (module docstring)."""
    return {
        # Never send a command again after an error: it may have been applied.
        "retry": Retry(NoBackoff(), 0),
        # Follow each MOVED by fixing that slot's owner, never by closing every
        # connection (and the replies in flight on them) to reload the whole map.
        # A ConnectionError still reloads the map, before the next command.
        "reinitialize_steps": 0,
    }


def cluster_client(
    nodes: Sequence[tuple[str, int]], settings: dict[str, Any], options: dict[str, Any]
) -> RedisCluster:
    """An asyncio cluster client for the startup ``nodes`` (no I/O until used).

    ``settings``: what redis-py parsed from one node's URL (credentials, TLS files);
    ``options``: the app's ``redis_options`` (those a cluster client does not take
    are left out; ``parser_class`` is given to every node's connections). No
    per-read socket timeout, as for one node: the worker's blocking reads outlast
    any fixed one, and aioq bounds whole operations itself. No re-sends
    (``_no_resends``).
    """
    merged = {**options, **_tls(settings)}
    merged.setdefault("socket_timeout", None)
    merged.update(_no_resends())
    kwargs = _accepted(RedisCluster, merged)
    startup = [ClusterNode(host, port) for host, port in nodes]
    client = RedisCluster(startup_nodes=startup, **kwargs)
    parser = options.get("parser_class")
    if parser is not None:
        # RedisCluster takes no parser_class, but hands its connection_kwargs to
        # every node's connections: to the startup nodes' copies, and (the same dict)
        # to the nodes it discovers later. Without aioq's parser a node's BUSY and
        # NOREPLICAS are bare ResponseErrors, not outages: a kiq() refused by
        # min-replicas-to-write raised a ResponseError instead of BrokerUnavailable.
        client.connection_kwargs["parser_class"] = parser
        for node in client.startup_nodes:
            node.connection_kwargs["parser_class"] = parser
    share_contexts(client)  # one SSL context for all TLS connections, not one each
    return client


def sync_cluster_client(
    nodes: Sequence[tuple[str, int]], settings: dict[str, Any], options: dict[str, Any]
) -> sync_redis.RedisCluster:
    """The synchronous cluster client of the heartbeat thread (``leases.py``)."""
    merged = {**options, **_tls(settings)}
    kwargs = _accepted(sync_redis.RedisCluster, merged)
    startup = [SyncClusterNode(host, port) for host, port in nodes]  # type: ignore[no-untyped-call]
    return sync_redis.RedisCluster(startup_nodes=startup, **kwargs)


_LOST: tuple[type[BaseException], ...] = (rex.ConnectionError, rex.TimeoutError, OSError)
"""Errors after which a cluster client may be talking to a node that no longer
serves its slots (the node died, or is cut off, and a replica took over)."""


async def execute_pipeline(pipe: Pipeline, *, raise_on_error: bool = True) -> list[Any]:
    """``pipe.execute(raise_on_error=…)``: the replies (error replies raised, or
    returned when ``raise_on_error`` is False).

    On a cluster, a lost connection (raised, or returned as a reply) also makes
    the client read the slot map again before its next command: redis-py does so
    after a single command's connection error, but after a pipeline's only by
    re-running it, which aioq turns off (``_no_resends``). Without this, a
    client that sends only pipelines (the batcher of ``result()`` waiters) would
    keep calling a killed primary after its replica took over."""
    try:
        replies: list[Any] = await pipe.execute(raise_on_error=raise_on_error)
    except _LOST:
        _rediscover(pipe)
        raise
    if any(isinstance(reply, _LOST) for reply in replies):
        _rediscover(pipe)
    return replies


def _rediscover(pipe: Pipeline) -> None:
    client = getattr(pipe, "cluster_client", None)
    if isinstance(client, RedisCluster):
        # What redis-py's RedisCluster.execute_command does after a
        # ConnectionError: its next command (or pipeline) first reloads the slots.
        client._initialize = True


async def node_connection(redis: RedisCluster, turn: int) -> AbstractConnection:
    """A new, not yet connected, plain connection to one primary of the cluster:
    the ``turn``-th in rotation, so that a reader that lost its node tries the
    next one. Discovers the cluster's nodes first when the client has not yet."""
    await redis.initialize()
    nodes = sorted(redis.get_primaries(), key=lambda n: n.name)
    node = nodes[turn % len(nodes)]
    conn: AbstractConnection = node.connection_class(**node.connection_kwargs)
    return conn


async def info_per_primary(redis: RedisCluster, section: str) -> list[dict[str, Any]]:
    """``INFO section`` of every primary."""
    reply = await redis.info(section, target_nodes=RedisCluster.PRIMARIES)
    values = list(reply.values()) if reply else []
    if values and all(isinstance(v, dict) for v in values):
        return values
    return [reply]  # one primary: redis-py gives its reply alone

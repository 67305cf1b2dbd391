"""Lease renewal from a thread of its own, on a connection of its own.

A worker's leases must not depend on its event loop: a task that blocks the
loop, or a hundred CPU-bound sync tasks fighting for the GIL, would otherwise
starve the heartbeat until another worker takes over jobs that are still
running. ``LeaseRenewer`` is a small *synchronous* client used only by the
heartbeat thread (``aioq._worker.lease``): one pipeline of ``renew.lua`` calls
per beat, nothing else on its connection.

The same pipeline carries the worker's registry entry (``Registration``): a
hash with a TTL of a few beats (host, pid, queues, counters kept in the
worker's memory), written at most once a second. It costs no round trip of its
own, and it says "alive" from the one place task code cannot starve.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from redis.connection import parse_url as redis_parse_url
from redis.exceptions import NoScriptError

from .cluster import sync_cluster_client
from .connection import SYNC_PARSER, connect_sync, parse_url
from .keys import GROUP, Keyspace
from .scripts import SCRIPTS
from .streams import Renewed

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    import redis

__all__ = ["LeaseRenewer", "Registration"]

_ASYNC_ONLY = ("connection_class", "connection_pool", "parser_class", "max_connections")


class Registration:
    """Where and how long a worker's registry entry is written by its heartbeat.

    ``last_seen`` is read back from the key's remaining TTL (Redis' clock):
    ``ttl_ms - PTTL`` is how long ago it was written.
    """

    __slots__ = ("every", "index", "key", "ttl_ms", "worker_id")

    def __init__(self, keys: Keyspace, worker_id: str, every: float) -> None:
        self.worker_id = worker_id
        self.key = keys.worker(worker_id)
        self.index = keys.workers()
        self.every = every
        self.ttl_ms = int((3 * every + 1) * 1000)


class LeaseRenewer:
    """Renews this consumer's leases; every method blocks (call it from a thread).

    Args:
        url: the app's Redis URL.
        options: the app's ``redis_options`` (those that only make sense for the
            asyncio client are left out).
        consumer: this worker's consumer name.
        timeout: seconds one renewal may take before it counts as failed.
        registration: where to write the worker's registry entry (None: nowhere).
    """

    def __init__(
        self,
        url: str,
        options: Mapping[str, Any],
        consumer: str,
        timeout: float,
        registration: Registration | None = None,
    ):
        kwargs = {k: v for k, v in options.items() if k not in _ASYNC_ONLY}
        kwargs["socket_timeout"] = timeout
        kwargs["socket_connect_timeout"] = timeout
        spec = parse_url(url)
        if not url.startswith("unix:"):  # TCP only (a unix connection refuses it)
            kwargs.setdefault("socket_keepalive", True)
        kwargs["decode_responses"] = False  # entry ids stay bytes, as everywhere
        self._redis: redis.Redis | None = None
        self._spec = spec
        self._kwargs = kwargs
        if not spec.cluster:
            if SYNC_PARSER is not None:
                kwargs["parser_class"] = SYNC_PARSER
            self._redis = connect_sync(url, **kwargs)
        self._consumer = consumer
        self._sha = SCRIPTS["renew"].sha
        self._registration = registration
        self._registered_at = -1e9

    def _client(self) -> redis.Redis:
        """The connection; a cluster client is made on first use (in the heartbeat
        thread: it asks a node for the slot map as it is made)."""
        if self._redis is None:
            # One pipeline per beat still: redis-py splits it per node.
            settings = redis_parse_url(self._spec.url)  # type: ignore[no-untyped-call]
            client = sync_cluster_client(self._spec.nodes, settings, self._kwargs)
            self._redis = client  # type: ignore[assignment]
        assert self._redis is not None
        return self._redis

    def renew(
        self,
        held: Mapping[str, Sequence[bytes]],
        status: Callable[[], Mapping[str, str | int]] | None = None,
    ) -> dict[str, Renewed]:
        """Renew ``held`` (level stream → entry ids) in one round trip, together
        with the registry entry (``status()``, when one is due); with nothing to
        send, PING (so an outage is still noticed). Raises the first error reply
        of a renewal, or a connection error."""
        reg = self._registration
        now = time.monotonic()
        register = reg is not None and status is not None and now - self._registered_at >= reg.every
        if not held and not register:
            self._client().ping()
            return {}
        streams = list(held)
        for _ in range(2):
            pipe = self._client().pipeline(transaction=False)
            for stream in streams:
                pipe.execute_command(  # type: ignore[no-untyped-call]
                    "EVALSHA", self._sha, 1, stream, GROUP, self._consumer, *held[stream]
                )
            if register:
                assert reg is not None and status is not None
                fields = dict(status())
                fields["ttl_ms"] = reg.ttl_ms
                pipe.hset(reg.key, mapping=fields)  # type: ignore[arg-type]
                pipe.pexpire(reg.key, reg.ttl_ms)
                pipe.sadd(reg.index, reg.worker_id)
            replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            self._client().script_load(SCRIPTS["renew"].source)  # Redis restarted
        if register and not any(isinstance(r, Exception) for r in replies[len(streams) :]):
            self._registered_at = now
        # A registry write Redis refused (OOM: HSET is refused, the renewals are
        # not) only delays the entry: it never turns a renewal into a failure.
        out: dict[str, Renewed] = {}
        for stream, reply in zip(streams, replies[: len(streams)], strict=True):
            if isinstance(reply, Exception):
                raise reply
            taken, gone = reply
            out[stream] = Renewed(list(taken), list(gone))
        return out

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()

"""Lease renewal from a thread of its own, on a connection of its own.

A worker's leases must not depend on its event loop: a task that blocks the
loop, or a hundred CPU-bound sync tasks fighting for the GIL, would otherwise
starve the heartbeat until another worker takes over jobs that are still
running. ``LeaseRenewer`` is a small *synchronous* client used only by the
heartbeat thread (``aioq._worker.lease``): one pipeline of ``renew.lua`` calls
per beat, nothing else on its connection.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import redis
from redis.exceptions import NoScriptError

from .connection import SYNC_PARSER
from .keys import GROUP
from .scripts import SCRIPTS
from .streams import Renewed

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["LeaseRenewer"]

_ASYNC_ONLY = ("connection_class", "connection_pool", "parser_class", "max_connections")


class LeaseRenewer:
    """Renews this consumer's leases; every method blocks (call it from a thread).

    Args:
        url: the app's Redis URL.
        options: the app's ``redis_options`` (those that only make sense for the
            asyncio client are left out).
        consumer: this worker's consumer name.
        timeout: seconds one renewal may take before it counts as failed.
    """

    def __init__(self, url: str, options: Mapping[str, Any], consumer: str, timeout: float):
        kwargs = {k: v for k, v in options.items() if k not in _ASYNC_ONLY}
        kwargs["socket_timeout"] = timeout
        kwargs["socket_connect_timeout"] = timeout
        if url.startswith(("redis://", "rediss://")):
            kwargs.setdefault("socket_keepalive", True)
        kwargs["decode_responses"] = False  # entry ids stay bytes, as everywhere
        if SYNC_PARSER is not None:
            kwargs["parser_class"] = SYNC_PARSER
        self._redis = redis.Redis.from_url(url, **kwargs)
        self._consumer = consumer
        self._sha = SCRIPTS["renew"].sha

    def renew(self, held: Mapping[str, Sequence[bytes]]) -> dict[str, Renewed]:
        """Renew ``held`` (level stream → entry ids) in one round trip; with
        nothing held, PING (so an outage is still noticed). Raises the first
        error reply, or a connection error."""
        if not held:
            self._redis.ping()
            return {}
        streams = list(held)
        for _ in range(2):
            pipe = self._redis.pipeline(transaction=False)
            for stream in streams:
                pipe.evalsha(self._sha, 1, stream, GROUP, self._consumer, *held[stream])
            replies = pipe.execute(raise_on_error=False)
            if not any(isinstance(r, NoScriptError) for r in replies):
                break
            self._redis.script_load(SCRIPTS["renew"].source)  # Redis restarted
        out: dict[str, Renewed] = {}
        for stream, reply in zip(streams, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            taken, gone = reply
            out[stream] = Renewed(list(taken), list(gone))
        return out

    def close(self) -> None:
        self._redis.close()

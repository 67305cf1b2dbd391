"""TLS connections: one ``ssl.SSLContext`` per set of ``ssl_*`` settings, shared
by every connection that uses them.

redis-py's asyncio ``SSLConnection`` builds a new context for each connection it
opens: ``ssl.create_default_context()`` reads the system's CA bundle, then the
connection's own files, on the event loop, each time. That took 20-150 ms per
connection (more on a loaded host); a worker opening its connections to a TLS
Redis Cluster blocked its loop for seconds, until the connects queued behind it
ran out of their 5 s timeout and the worker could not start
(tests/integration/test_tls.py). Here the context is built once per settings and
reused; the key includes the files' modification times, so certificates rotated
on disk are loaded by the next connection, as before.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from redis.asyncio.connection import SSLConnection

if TYPE_CHECKING:
    import ssl
    from collections.abc import Mapping

    from redis.asyncio.connection import RedisSSLContext

__all__ = ["SharedSSLConnection", "SharedSSLContext", "plain_to_tls_hint", "share_contexts"]

_SETTINGS = (
    "keyfile",
    "certfile",
    "cert_reqs",
    "include_verify_flags",
    "exclude_verify_flags",
    "ca_certs",
    "ca_data",
    "ca_path",
    "check_hostname",
    "min_version",
    "ciphers",
    "password",
)
_FILES = ("keyfile", "certfile", "ca_certs", "ca_path")

_CONTEXTS: dict[tuple[Any, ...], tuple[tuple[float | None, ...], ssl.SSLContext]] = {}
"""settings → (the files' modification times, the context built from them)."""


def _mtime(path: Any) -> float | None:
    try:
        return os.stat(path).st_mtime if path else None
    except OSError:
        return None  # redis-py's own load then raises the clear error


def shared_context(settings: RedisSSLContext) -> ssl.SSLContext:
    """The context for ``settings`` (a connection's ``RedisSSLContext``), built
    once per distinct settings and files, then given to every connection."""
    values = (getattr(settings, name, None) for name in _SETTINGS)
    key = tuple(tuple(v) if isinstance(v, list) else v for v in values)
    mtimes = tuple(_mtime(getattr(settings, name, None)) for name in _FILES)
    cached = _CONTEXTS.get(key)
    if cached is not None and cached[0] == mtimes:
        settings.context = cached[1]
    else:  # new settings, or a file changed: build it (once) and keep only that one
        settings.context = None
        _CONTEXTS[key] = (mtimes, settings.get())
    return _CONTEXTS[key][1]


class SharedSSLContext:
    """Mixin for redis-py's asyncio SSL connection classes: connect with the
    shared context of their settings (module docstring)."""

    ssl_context: RedisSSLContext

    def _connection_arguments(self) -> Mapping[str, Any]:
        shared_context(self.ssl_context)
        arguments: Mapping[str, Any] = super()._connection_arguments()  # type: ignore[misc]
        return arguments


class SharedSSLConnection(SharedSSLContext, SSLConnection):
    """A cluster node's TLS connection (``share_contexts``)."""


def share_contexts(client: Any) -> None:
    """Make an asyncio ``RedisCluster`` open its TLS connections with shared
    contexts: redis-py picks ``SSLConnection`` itself (it takes no connection
    class), so the class is swapped in the node settings it made, for the startup
    nodes and every node it discovers later."""
    kwargs = client.connection_kwargs
    if kwargs.get("connection_class") is not SSLConnection:
        return
    kwargs["connection_class"] = SharedSSLConnection
    for node in client.nodes_manager.startup_nodes.values():
        if node.connection_class is SSLConnection:
            node.connection_class = SharedSSLConnection


_PLAIN = ("redis://", "redis+cluster://", "redis+sentinel://")
_CUT_OFF = ("reset by peer", "closed by server", "Connection closed")


def plain_to_tls_hint(url: str, exc: BaseException) -> str:
    """A hint for an error of a plain-TCP URL that looks like a TLS-only port's
    answer (it drops a client that does not start a handshake), else ''."""
    if not url.startswith(_PLAIN):
        return ""
    text = str(exc)
    sentinel = url.startswith("redis+sentinel://") and "No master found" in text
    if not sentinel and not any(cut in text for cut in _CUT_OFF):
        return ""
    scheme = url.split("://", 1)[0].replace("redis", "rediss", 1)
    return (
        f" (if it serves TLS only, use a {scheme}:// URL, with ?ssl_ca_certs=… when its "
        "certificate is not signed by a CA this host trusts)"
    )

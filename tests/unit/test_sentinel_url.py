"""``redis+sentinel://`` URLs: what they name, what is refused, and where each
option goes (no I/O: clients connect lazily)."""

from __future__ import annotations

import pytest

from aioq import ConfigurationError
from aioq._transport.connection import (
    PackedSentinelConnection,
    PackedSentinelSSLConnection,
    connect,
    connect_sync,
    describe,
)
from aioq._transport.sentinel import SentinelURL, parse


def test_a_sentinel_url_names_sentinels_service_and_db() -> None:
    assert parse("redis+sentinel://a:26379,b:26380/mymaster/3") == SentinelURL(
        (("a", 26379), ("b", 26380)), "mymaster", 3
    )
    assert parse("rediss+sentinel://u:p%40ss@[::1]:1,c/svc") == SentinelURL(
        (("::1", 1), ("c", 26379)), "svc", 0, "u", "p@ss", tls=True
    )
    assert parse("redis+sentinel://:pw@h:5/s").password == "pw"  # type: ignore[union-attr]
    assert parse("redis://localhost:6379/0") is None
    assert parse("unix:///tmp/redis.sock") is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel:///mymaster", "at least one sentinel"),
        ("redis+sentinel://h:1", "service_name"),
        ("redis+sentinel://h:1/", "service_name"),
        ("redis+sentinel://h:1/s/x", "database must be a number"),
        ("redis+sentinel://h:1/s/0/extra", "service_name"),
        ("redis+sentinel://h:99999/s", "bad sentinel address"),
        ("redis+sentinel://:secret@h:port/s", "bad sentinel address"),
    ],
)
def test_a_bad_sentinel_url_is_a_clear_configuration_error(url: str, why: str) -> None:
    with pytest.raises(ConfigurationError, match=why) as info:
        parse(url)
    assert "secret" not in str(info.value)


async def test_options_go_to_the_nodes_and_sentinel_options_to_the_sentinels() -> None:
    client = connect(
        "redis+sentinel://:nodepw@127.0.0.1:1,127.0.0.1:2/svc/4",
        sentinel_options={"password": "sentinelpw"},
    )
    try:
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        assert pool.connection_class is PackedSentinelConnection
        assert (kwargs["password"], kwargs["db"]) == ("nodepw", 4)
        assert "sentinel_options" not in kwargs
        manager = pool.sentinel_manager  # type: ignore[attr-defined]
        assert manager.sentinel_kwargs["password"] == "sentinelpw"
        assert manager.sentinel_kwargs["socket_timeout"] == 2.0
        # a sentinel that does not answer is left at once for the next one
        assert manager.sentinel_kwargs["retry"].get_retries() == 0
        hosts = [s.connection_pool.connection_kwargs["port"] for s in manager.sentinels]
        assert hosts == [1, 2]
    finally:
        await client.aclose()
    tls = connect("rediss+sentinel://h:1/svc")
    try:
        assert tls.connection_pool.connection_class is PackedSentinelSSLConnection
        assert tls.connection_pool.sentinel_manager.sentinel_kwargs["ssl"] is True  # type: ignore[attr-defined]
    finally:
        await tls.aclose()


def test_the_heartbeats_sync_client_follows_the_sentinels_too() -> None:
    client = connect_sync(
        "redis+sentinel://:nodepw@127.0.0.1:1/svc/2", sentinel_options={"username": "s"}
    )
    try:
        pool = client.connection_pool
        assert pool.connection_kwargs["password"] == "nodepw"
        assert pool.connection_kwargs["db"] == 2
        assert pool.sentinel_manager.sentinel_kwargs["username"] == "s"  # type: ignore[attr-defined]
        assert pool.sentinel_manager.sentinel_kwargs["retry"].get_retries() == 0  # type: ignore[attr-defined]
    finally:
        client.close()


def test_describe_hides_the_password() -> None:
    assert describe("redis+sentinel://:pw@a:1,b:2/svc") == "redis+sentinel://***@a:1,b:2/svc"


async def test_the_urls_query_string_reaches_the_nodes_and_the_sentinels() -> None:
    """``?ssl_ca_certs=…`` (any redis-py connection option) in a Sentinel URL, as in
    a ``rediss://`` one: the only way to pass it to an ``aioq`` CLI command. It
    wins over the app's own options, as redis-py's ``from_url`` does."""
    url = "rediss+sentinel://:pw@h:1,h:2/svc/3?ssl_ca_certs=/ca.pem&socket_timeout=4"
    assert parse(url) == SentinelURL(
        (("h", 1), ("h", 2)),
        "svc",
        3,
        None,
        "pw",
        tls=True,
        options=(("ssl_ca_certs", "/ca.pem"), ("socket_timeout", 4.0)),
    )
    client = connect(url, ssl_ca_certs="/other.pem", ssl_certfile="/client.crt")
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert (kwargs["ssl_ca_certs"], kwargs["ssl_certfile"]) == ("/ca.pem", "/client.crt")
        assert (kwargs["socket_timeout"], kwargs["db"], kwargs["password"]) == (4.0, 3, "pw")
        sentinels = client.connection_pool.sentinel_manager.sentinel_kwargs  # type: ignore[attr-defined]
        assert (sentinels["ssl_ca_certs"], sentinels["ssl"]) == ("/ca.pem", True)
    finally:
        await client.aclose()
    sync = connect_sync(url)
    try:
        assert sync.connection_pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
        sentinels = sync.connection_pool.sentinel_manager.sentinel_kwargs  # type: ignore[attr-defined]
        assert sentinels["ssl_ca_certs"] == "/ca.pem"
    finally:
        sync.close()

"""Which Redis an aioq URL names (``connection.parse_url``), and what the clients
made from it are (no I/O: constructors connect on first use)."""

from __future__ import annotations

import pytest
import redis
from redis.asyncio import Redis, RedisCluster

import aioq
from aioq._transport.cluster import by_slot, is_cluster, slot
from aioq._transport.connection import UrlSpec, cluster_url, connect, parse_url
from aioq._transport.leases import LeaseRenewer


def test_a_plain_url_is_one_server() -> None:
    for url in ("redis://localhost:6379/2", "rediss://h:1/0?ssl_cert_reqs=none", "unix:///s"):
        assert parse_url(url) == UrlSpec(url)


def test_a_cluster_url_lists_its_startup_nodes() -> None:
    spec = parse_url("redis+cluster://127.0.0.1:7000,127.0.0.1:7001, other:7002")
    assert spec == UrlSpec(
        "redis://127.0.0.1:7000",
        True,
        (("127.0.0.1", 7000), ("127.0.0.1", 7001), ("other", 7002)),
    )


def test_a_tls_cluster_url_keeps_credentials_and_query_for_every_node() -> None:
    spec = parse_url("rediss+cluster://u:p%40ss@a:7000,b/0?ssl_ca_certs=/ca.pem")
    assert spec.cluster
    assert spec.nodes == (("a", 7000), ("b", 6379))
    assert spec.url == "rediss://u:p%40ss@a:7000?ssl_ca_certs=/ca.pem"


def test_cluster_true_makes_a_plain_url_a_cluster_url() -> None:
    assert parse_url("redis://h:7000", cluster=True) == UrlSpec(
        "redis://h:7000", True, (("h", 7000),)
    )
    assert cluster_url("redis://h:7000") == "redis+cluster://h:7000"
    assert cluster_url("rediss://h:7000") == "rediss+cluster://h:7000"
    assert cluster_url("redis+cluster://h:7000") == "redis+cluster://h:7000"
    app = aioq.App("redis://127.0.0.1:7000", cluster=True)
    assert app.url == "redis+cluster://127.0.0.1:7000"
    assert app.broker.session().batch_records is False  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("redis+cluster://h:7000/3", "only database 0"),
        ("redis+cluster://h:x", "bad port"),
        ("redis+cluster://h:7000,,i:7001", "empty node"),
        ("redis+cluster://u:secret@:7000", "empty node"),
    ],
)
def test_bad_cluster_urls_are_refused_clearly(url: str, error: str) -> None:
    with pytest.raises(aioq.ConfigurationError, match=error) as caught:
        parse_url(url)
    assert "secret" not in str(caught.value)


def test_cluster_true_on_a_unix_socket_is_refused() -> None:
    with pytest.raises(aioq.ConfigurationError, match="not a Redis Cluster URL"):
        aioq.App("unix:///tmp/redis.sock", cluster=True)


async def test_clients_match_the_url() -> None:
    one = connect("redis://127.0.0.1:1")
    many = connect("redis+cluster://127.0.0.1:1,127.0.0.1:2")
    try:
        assert isinstance(one, Redis) and not is_cluster(one)
        assert isinstance(many, RedisCluster) and is_cluster(many)
        # no per-read timeout (the worker's blocking reads outlast any fixed one)
        assert many.connection_kwargs["socket_timeout"] is None
    finally:
        await one.aclose()
        await many.aclose()
    renewer = LeaseRenewer("redis+cluster://127.0.0.1:1", {}, "w", 1.0)  # no I/O yet
    with pytest.raises(redis.RedisClusterException, match="cannot be connected"):
        renewer.renew({})  # the heartbeat's first beat makes the cluster client
    renewer.close()


async def test_the_cluster_client_never_sends_a_command_twice() -> None:
    """Whatever the app's redis_options say: no re-send after an error (the command
    may have been applied) and no closing of every connection on MOVED
    (tests/integration/test_cluster_resends.py shows both on a real cluster)."""
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    client = connect(
        "redis+cluster://127.0.0.1:1",
        retry=Retry(ExponentialBackoff(), 5),
        reinitialize_steps=5,
    )
    try:
        assert isinstance(client, RedisCluster)
        assert client.retry.get_retries() == 0
        assert client.reinitialize_steps == 0
        # the redis-py flag execute_pipeline sets after a lost connection: its
        # next command reloads the slot map first (a new client has it set)
        assert client._initialize is True
    finally:
        await client.aclose()


def test_keys_group_by_slot_in_order() -> None:
    keys = ["a:{q1}:stream", "a:{q2}:stream", "a:{q1}:stream:9", "a:{q2}:stream:3"]
    assert by_slot(keys) == [
        ["a:{q1}:stream", "a:{q1}:stream:9"],
        ["a:{q2}:stream", "a:{q2}:stream:3"],
    ]
    assert slot("a:{q1}:x") == slot("q1")

"""The local Redis Cluster fixture works, and aioq's task-level keys run there.

``redis_cluster_url`` (tests/conftest.py, scripts/with_cluster.py) is a real cluster
of 3 primaries + 3 replicas on loopback ports; these tests talk to it with redis-py's
own ``RedisCluster`` client, as the cluster broker will.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import RedisCluster
from redis.exceptions import ResponseError

from aioq._transport.keys import Keyspace
from aioq._transport.scripts import SCRIPTS
from tests.unit.test_keys import slot


@pytest.fixture
async def cluster(redis_cluster_url: str) -> AsyncIterator[RedisCluster]:
    client = RedisCluster.from_url(redis_cluster_url)
    await client.initialize()
    yield client
    await client.aclose()


@pytest.fixture
async def cluster_prefix(cluster: RedisCluster) -> AsyncIterator[str]:
    """A key prefix no other test uses; its keys are deleted afterwards (on every
    primary: SCAN on a cluster client visits each of them)."""
    value = f"aioqtest-{uuid.uuid4().hex[:10]}"
    yield value
    keys = [key async for key in cluster.scan_iter(match=f"{value}:*", count=1000)]
    for key in keys:
        await cluster.delete(key)


async def test_the_cluster_has_three_primaries_with_a_replica_each(cluster: RedisCluster) -> None:
    assert len(cluster.get_primaries()) == 3
    nodes = (await cluster.cluster_nodes()).values()
    primaries = {n["node_id"] for n in nodes if "master" in n["flags"]}
    replicas = [n for n in nodes if "slave" in n["flags"]]
    assert len(primaries) == 3
    assert len(replicas) == 3
    assert {n["master_id"] for n in replicas} == primaries  # one replica each
    assert all(n["connected"] and "fail" not in n["flags"] for n in nodes)
    info = await cluster.cluster_info()
    assert info["cluster_state"] == "ok"
    assert int(info["cluster_slots_assigned"]) == 16384


async def test_keys_in_many_slots_are_written_and_read_back(
    cluster: RedisCluster, cluster_prefix: str
) -> None:
    keys = [f"{cluster_prefix}:k{i}" for i in range(1000)]
    slots = {slot(k) for k in keys}
    assert len(slots) > 900  # no hash tag: spread over the whole slot space
    owners = {cluster.get_node_from_key(k).name for k in keys}
    assert owners == {node.name for node in cluster.get_primaries()}

    pipe = cluster.pipeline()  # redis-py splits it per node
    for i, key in enumerate(keys):
        pipe.set(key, i)
    assert await pipe.execute() == [True] * len(keys)

    pipe = cluster.pipeline()
    for key in keys:
        pipe.get(key)
    assert await pipe.execute() == [str(i).encode() for i in range(len(keys))]
    assert await cluster.get(keys[0]) == b"0"
    # our CRC16 agrees with the server's own slot function
    for key in keys[:50]:
        assert await cluster.cluster_keyslot(key) == slot(key)


async def test_admit_runs_on_the_cluster_with_task_keys_in_one_slot(
    cluster: RedisCluster, cluster_prefix: str
) -> None:
    """admit.lua takes a task's rate and running keys together: on a cluster that
    works only because they share the ``{task:NAME}`` hash tag."""
    keys = Keyspace(cluster_prefix)
    task = "app.tasks.send_email"
    await cluster.script_load(SCRIPTS["admit"].source)
    sha = SCRIPTS["admit"].sha
    # interval 1 s, max_running 2, lease 5 s: the first job starts, a second waits
    # for its rate slot
    first = await cluster.evalsha(
        sha, 2, keys.rate(task), keys.running(task), 1_000_000, 0, "job-1", 2, 5000
    )
    second = await cluster.evalsha(
        sha, 2, keys.rate(task), keys.running(task), 1_000_000, 0, "job-2", 2, 5000
    )
    assert first == [0]
    assert second[0] == 1 and 0 < second[1] <= 1_000_000
    assert await cluster.zcard(keys.running(task)) == 1

    # the old layout ({p}:rate:T, {p}:running:T) is refused by a cluster
    old = [f"{cluster_prefix}:rate:{task}", f"{cluster_prefix}:running:{task}"]
    assert slot(old[0]) != slot(old[1])
    node = cluster.get_node_from_key(old[0])
    with pytest.raises(ResponseError, match="same slot"):
        await cluster.execute_command(
            "EVALSHA", sha, 2, *old, 0, 0, "job-3", 0, 5000, target_nodes=node
        )


async def test_core_path_on_the_cluster(redis_cluster_url: str) -> None:
    """The target: kiq -> worker -> result on a Redis Cluster, from the URL alone."""
    import aioq

    hostport = redis_cluster_url.split("://", 1)[1]
    app = aioq.App(f"redis+cluster://{hostport}", prefix=f"aioqtest-{uuid.uuid4().hex[:10]}")

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    worker = aioq.Worker(app, block=0.1, grace=5.0)
    try:
        async with asyncio.timeout(20):
            job = await add.kiq(1, 2)
            running = asyncio.create_task(worker.run())
            try:
                assert await job.result(timeout=10) == 3
            finally:
                worker.stop()
                await running
    finally:
        await app.aclose()

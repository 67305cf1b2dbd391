"""``/livez`` and ``/readyz`` of a real worker (issue 12, "Metrics, health").

Each test runs its own private ``redis-server``: one pauses it (CLIENT PAUSE).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
import redis

import aioq
from tests.chaos.harness import RedisServer
from tests.conftest import WorkerRunner
from tests.integration.probes import free_port, get, wait_status
from tests.integration.test_process import client, spawn  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    private = RedisServer()
    yield private
    private.stop()


@pytest.fixture
async def private_app(server: RedisServer) -> AsyncIterator[aioq.App]:
    app = aioq.App(server.url, prefix="health", visibility_timeout=2.0)
    yield app
    await app.aclose()


async def test_probes_answer_200_then_readyz_503_while_redis_is_paused(
    server: RedisServer, private_app: aioq.App, workers: WorkerRunner
) -> None:
    @private_app.task
    async def add(x: int, y: int) -> int:
        return x + y

    port = free_port()
    await workers.start(private_app, health_port=port)
    assert await get(port, "/livez") == (200, "ok\n")
    assert await get(port, "/readyz") == (200, "ok\n")
    assert await (await add.kiq(1, 2)).result(timeout=10) == 3
    assert (await get(port, "/nope"))[0] == 404

    pauser = redis.Redis(port=server.port)
    try:
        pauser.execute_command("CLIENT", "PAUSE", "4000", "ALL")
        why = await wait_status(port, "/readyz", 503, within=3.5)
        assert "no round trip to Redis" in why
        # No renewal for a whole visibility timeout (2 s): the leases have lapsed.
        why = await wait_status(port, "/livez", 503, within=3.5)
        assert "leases not renewed" in why
        # Redis answers again: ready again, and jobs run.
        await wait_status(port, "/readyz", 200, within=15)
        await wait_status(port, "/livez", 200, within=5)
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5
    finally:
        pauser.execute_command("CLIENT", "UNPAUSE")
        pauser.close()


async def test_readyz_is_503_while_the_worker_is_stopping(
    private_app: aioq.App, workers: WorkerRunner
) -> None:
    started = asyncio.Event()

    @private_app.task
    async def slow() -> str:
        started.set()
        await asyncio.sleep(1.5)
        return "done"

    port = free_port()
    worker = await workers.start(private_app, health_port=port)
    job = await slow.kiq()
    await asyncio.wait_for(started.wait(), 10)
    worker.stop()
    assert await get(port, "/readyz") == (503, "stopping\n")
    assert (await get(port, "/livez"))[0] == 200  # still alive: draining its task
    assert await job.result(timeout=10) == "done"
    await workers.stop(worker)
    with pytest.raises(OSError):  # the probes close with the worker
        await get(port, "/readyz")


@pytest.mark.slow
async def test_cli_health_port_with_two_processes(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    """``aioq worker -w 2 --health-port P``: process k serves port P+k."""
    port = free_port()
    proc = spawn("worker", "tests.procapp:app", "-w", "2", "-c", "4", "--health-port", str(port))
    for k in (0, 1):
        await wait_status(port + k, "/readyz", 200, within=40)  # -w 2: two starts
        assert await get(port + k, "/livez") == (200, "ok\n")
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0

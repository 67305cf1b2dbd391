"""Shared fixtures: a real Redis for the whole session, an isolated prefix per test.

Redis comes from ``AIOQ_REDIS_URL`` (``make test`` sets it through
``scripts/with_redis.py``); without it, a private ``redis-server`` is started
here. A test never writes outside its own key prefix and deletes its keys
afterwards, so a user-provided Redis is left as it was.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import redis

import aioq
import aioq.testing.plugin
import aioq.testing.redis

ROOT = Path(__file__).resolve().parent.parent

# Property tests check behaviour, never speed: 4 pytest processes on 2 cores make a
# single example take longer than Hypothesis's default 200 ms deadline.
hypothesis.settings.register_profile(
    "aioq", deadline=None, suppress_health_check=[hypothesis.HealthCheck.too_slow]
)
hypothesis.settings.load_profile("aioq")


def _load_script(name: str):  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_with_redis():  # type: ignore[no-untyped-def]
    """The shared Redis helpers (``scripts/with_redis.py`` loads the same module)."""
    return aioq.testing.redis


def pytest_configure(config: pytest.Config) -> None:
    """The aioq pytest plugin, when the installed package did not register it (an
    older install, or ``PYTHONPATH`` pointing at a checkout); pytester for the
    tests of the plugin itself."""
    if not config.pluginmanager.is_registered(aioq.testing.plugin):
        config.pluginmanager.register(aioq.testing.plugin, "aioq")
    if not config.pluginmanager.has_plugin("pytester"):
        config.pluginmanager.import_plugin("pytester")


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> str:
    """The plugin's ``aioq_redis_url``, so one server serves the whole session; but
    where the plugin skips for want of a Redis, the project's own tests fail."""
    if aioq.testing.redis.user_url() is None and aioq.testing.redis.redis_server() is None:
        pytest.exit(aioq.testing.redis.INSTALL_HINT, returncode=1)
    url: str = request.getfixturevalue("aioq_redis_url")
    return url


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """A Redis Cluster for the session: ``AIOQ_REDIS_CLUSTER_URL`` when it answers
    ``cluster_state:ok`` (``scripts/with_cluster.py`` sets it), else a private one
    of 3 primaries + 3 replicas on loopback ports (a few seconds to start), torn
    down afterwards. Skipped when ``redis-server`` or ``redis-cli`` is missing.

    The URL names one node; a cluster client discovers the others from it."""
    with_cluster = _load_script("with_cluster")
    url = os.environ.get("AIOQ_REDIS_CLUSTER_URL")
    if url and with_cluster.reachable(url):
        yield url
        return
    found = with_cluster.binaries()
    if found is None:
        pytest.skip("no Redis Cluster for this test: " + with_cluster.INSTALL_HINT)
    cluster = with_cluster.PrivateCluster(*found)
    try:
        cluster.start()
    except SystemExit as exc:
        pytest.fail(f"could not start a local Redis Cluster: {exc}")
    os.environ["AIOQ_REDIS_CLUSTER_URL"] = cluster.url  # worker subprocesses inherit it
    try:
        yield cluster.url
    finally:
        os.environ.pop("AIOQ_REDIS_CLUSTER_URL", None)
        cluster.stop()


def _sentinel_deployment():  # type: ignore[no-untyped-def]
    """A started private Sentinel deployment (``scripts/with_sentinel.py``)."""
    with_sentinel = _load_script("with_sentinel")
    server = with_sentinel.binary()
    if server is None:
        pytest.skip("no Redis Sentinel for this test: " + with_sentinel.INSTALL_HINT)
    deployment = with_sentinel.PrivateSentinel(server)
    try:
        deployment.start()
    except SystemExit as exc:
        pytest.fail(f"could not start a local Redis Sentinel deployment: {exc}")
    return deployment


@pytest.fixture(scope="session")
def redis_sentinel_url() -> Iterator[str]:
    """A Redis Sentinel deployment for the session: ``AIOQ_REDIS_SENTINEL_URL`` when
    one of its sentinels answers (``scripts/with_sentinel.py`` sets it), else a
    private primary + replica + 3 sentinels (quorum 2) on loopback ports (~2 s to
    start), torn down afterwards. Skipped when ``redis-server`` is missing.

    The URL is ``redis+sentinel://host:port,…/service``. Tests that fail the
    primary over use ``sentinel_deployment`` (their own) instead."""
    url = os.environ.get("AIOQ_REDIS_SENTINEL_URL")
    if url and _load_script("with_sentinel").reachable(url):
        yield url
        return
    deployment = _sentinel_deployment()
    try:
        yield deployment.url
    finally:
        deployment.stop()


@pytest.fixture
def sentinel_deployment() -> Iterator[Any]:
    """A private Sentinel deployment of this test alone (a ``PrivateSentinel`` of
    ``scripts/with_sentinel.py``: ``url``, ``primary()``, ``failover()``, ``kill()``,
    ``revive()``), for tests that fail its primary over."""
    deployment = _sentinel_deployment()
    try:
        yield deployment
    finally:
        deployment.stop()


@pytest.fixture
def prefix(redis_url: str) -> Iterator[str]:
    """A key prefix no other test uses; every key under it is deleted afterwards."""
    value = f"aioqtest-{uuid.uuid4().hex[:10]}"
    yield value
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{value}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
    finally:
        client.close()


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


sys.path.insert(0, str(ROOT))  # so worker subprocesses and tests import tests.apps


both_record_modes = pytest.mark.parametrize(
    "app", [True, False], ids=["batch-records", "per-job-records"], indirect=True
)
"""Run a test with workers writing job records a batch per script (single node)
and one script per job (what Redis Cluster needs: ``batch_records=False``)."""


on_cluster_too = pytest.mark.parametrize("broker_url", ["single", "cluster"], indirect=True)
"""Run a test on a single Redis server and on the session's Redis Cluster
(``redis_cluster_url``: 3 primaries + 3 replicas): its ``app`` and every worker
process it spawns use ``broker_url``."""


def clean_cluster(url: str, prefix: str) -> None:
    """Delete every key under ``prefix`` on every primary of the cluster at ``url``."""
    client = redis.RedisCluster.from_url(url)
    try:
        for key in list(client.scan_iter(match=f"{prefix}:*", count=1000)):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def broker_url(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> Iterator[str]:
    """The URL of a test's app and worker processes: the session's Redis, or (param
    ``"cluster"``, see ``on_cluster_too``) its Redis Cluster as ``redis+cluster://``."""
    if getattr(request, "param", "single") != "cluster":
        yield redis_url
        return
    cluster_url: str = request.getfixturevalue("redis_cluster_url")
    yield "redis+cluster://" + cluster_url.split("://", 1)[1]
    clean_cluster(cluster_url, prefix)


@pytest.fixture
def broker_redis(broker_url: str) -> Iterator[redis.Redis]:
    """A synchronous client of ``broker_url`` (a cluster client on the cluster), for
    assertions about keys."""
    if broker_url.startswith("redis+cluster://"):
        node = "redis://" + broker_url.split("://", 1)[1]
        client: redis.Redis = redis.RedisCluster.from_url(node)  # type: ignore[assignment]
    else:
        client = redis.Redis.from_url(broker_url)
    yield client
    client.close()


@pytest.fixture
async def app(
    request: pytest.FixtureRequest, broker_url: str, prefix: str
) -> AsyncIterator[aioq.App]:
    """A fresh App on the test Redis (``broker_url``) with its own prefix and a
    short visibility timeout."""
    application = aioq.App(broker_url, prefix=prefix, visibility_timeout=2.0)
    if not application.broker.cluster:  # type: ignore[attr-defined]
        application.broker.batch_records = getattr(request, "param", True)  # type: ignore[attr-defined]
    yield application
    await application.aclose()


@pytest.fixture
async def named_app(redis_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    """An App whose connections carry a unique client name (to find its pub/sub one)."""
    application = aioq.App(
        redis_url, prefix=prefix, visibility_timeout=2.0, client_name=f"w-{uuid.uuid4().hex[:8]}"
    )
    yield application
    await application.aclose()


def pubsub_clients(client: redis.Redis, name: str) -> list[dict[str, Any]]:
    """Pub/sub connections on the server with the given client name."""
    return [c for c in client.client_list(_type="pubsub") if c.get("name") == name]


def kill_pubsub(client: redis.Redis, app: aioq.App) -> int:
    """Kill ``app``'s pub/sub connections (an app of ``named_app``: found by its
    client name) and no other: under ``pytest -n`` the server is shared, and a
    ``CLIENT KILL TYPE pubsub`` would cut other tests' waiters. How many died."""
    name = app.redis_options["client_name"]
    assert name, "kill_pubsub needs an App with a client_name (the named_app fixture)"
    return sum(int(client.client_kill_filter(_id=c["id"])) for c in pubsub_clients(client, name))


def run_cli(
    redis_url: str, prefix: str, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """``python -m aioq ARGS`` against ``redis_url`` with the test's prefix (the test
    apps read ``AIOQ_TEST_PREFIX``); stdout and stderr captured."""
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "aioq", *args],
        env=env,
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class WorkerRunner:
    """Starts in-process workers for a test and stops them all at the end."""

    def __init__(self) -> None:
        self.running: list[tuple[aioq.Worker, asyncio.Task[None]]] = []

    async def start(self, app: aioq.App, **options: Any) -> aioq.Worker:
        options.setdefault("block", 0.1)
        options.setdefault("grace", 5.0)
        # Tests of bad messages expect an unknown task's dead letter at once; the
        # rolling-deploy window (60 s by default) has its own tests (test_deploys.py).
        options.setdefault("unknown_task_grace", 0)
        worker = aioq.Worker(app, **options)
        task = asyncio.create_task(worker.run())
        self.running.append((worker, task))
        ready = asyncio.create_task(worker.ready.wait())
        await asyncio.wait({ready, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        assert worker.ready.is_set(), "worker did not start within 10 s"
        return worker

    async def stop(self, worker: aioq.Worker) -> None:
        for w, task in self.running:
            if w is worker:
                w.stop()
                await asyncio.wait_for(task, 15)

    async def stop_all(self) -> None:
        for worker, _ in self.running:
            worker.stop()
        for _, task in self.running:
            await asyncio.wait_for(task, 15)
        self.running.clear()


@pytest.fixture
async def workers() -> AsyncIterator[WorkerRunner]:
    runner = WorkerRunner()
    yield runner
    await runner.stop_all()

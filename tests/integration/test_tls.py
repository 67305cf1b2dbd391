"""TLS: one server with client certificates (``rediss://``), a unix socket
(``unix://``), and a TLS Redis Cluster and a TLS Sentinel deployment
(``rediss+cluster://``, ``rediss+sentinel://``) served by a real ``aioq worker``.

Certificates come from ``scripts/tlsfiles.py`` (``openssl``: a CA, a server and a
client certificate for 127.0.0.1). The single servers are started per test
(``--port 0 --tls-port … --tls-auth-clients yes``, or a unix socket); the cluster
(3 primaries, ``--tls-cluster yes``) and the Sentinel deployment (primary, replica
and 3 sentinels, all TLS only) once for the tests that need them
(``PrivateCluster`` / ``PrivateSentinel`` of ``scripts/with_cluster.py`` and
``scripts/with_sentinel.py`` with ``tls=``), torn down after. Skipped, saying why,
only when redis-server cannot serve TLS (found by trying) or openssl is missing."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

import aioq
from aioq._transport.connection import HiredisPacking, PackedSSLConnection, PackedUnixConnection
from aioq.testing.redis import free_port, redis_server
from scripts import tlsfiles
from tests import tlsapp
from tests.conftest import ROOT, _load_script, run_cli


class Server:
    def __init__(self, args: list[str], where: Path) -> None:
        binary = redis_server()
        assert binary is not None
        self.proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--dir", str(where), "--save", "", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _wait(ready: object, server: Server, what: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            out = server.proc.stdout.read().decode() if server.proc.stdout else ""
            pytest.fail(f"redis-server ({what}) exited: {out[-500:]}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"redis-server ({what}) did not start within 10 s")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tlsfiles.Certificates:
    """A CA, server and client certificates; skips when redis-server cannot serve
    TLS (tried: a TLS-only server must answer PING)."""
    server = redis_server()
    if server is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl on PATH")
    certs = tlsfiles.make(tmp_path_factory.mktemp("certs"))
    why = tlsfiles.unsupported(server, certs)
    if why is not None:
        pytest.skip(why)
    return certs


@pytest.fixture
def tls_url(
    certificates: tlsfiles.Certificates, tmp_path: Path
) -> Iterator[tuple[str, tlsfiles.Certificates]]:
    """``rediss://`` of a server that requires client certificates, with the client
    certificate in the query string; and the certificates."""
    certs = certificates
    port = free_port()
    server = Server(["--port", "0", "--tls-port", str(port), *certs.server_args("yes")], tmp_path)

    def answers() -> bool:
        context = certs.context()
        context.load_cert_chain(certs.crt("client"), certs.key("client"))
        try:
            with tlsfiles.wrap(socket.create_connection(("127.0.0.1", port), 1), context) as tls:
                tls.sendall(b"PING\r\n")
                return tls.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        _wait(answers, server, "TLS")
        yield f"rediss://127.0.0.1:{port}/0?{certs.query(client_certificate=True)}", certs
    finally:
        server.stop()


@pytest.fixture
def unix_url(tmp_path: Path) -> Iterator[str]:
    if redis_server() is None:
        pytest.skip("needs redis-server on PATH")
    path = tmp_path / "redis.sock"
    server = Server(["--port", "0", "--unixsocket", str(path)], tmp_path)
    _wait(path.exists, server, "unix socket")
    try:
        yield f"unix://{path}?db=0"
    finally:
        server.stop()


async def run_core_path(app: aioq.App) -> None:
    """kiq → worker → result, a retry, progress over pub/sub, and the heartbeat
    thread's own (sync) connection writing the worker's registry entry."""
    tries: list[int] = []

    @app.task(name="add", retries=1, retry_backoff=0.01)
    async def add(ctx: aioq.Context, x: int, y: int) -> int:
        tries.append(x)
        await ctx.progress(1, 1)
        if len(tries) == 1:
            raise RuntimeError("first attempt fails")
        return x + y

    worker = aioq.Worker(app, block=0.1, grace=2.0)
    running = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), 10)
        assert await (await add.kiq(2, 3)).result(timeout=10) == 5
        assert tries == [2, 2]
        deadline = asyncio.get_running_loop().time() + 10
        while [w.id for w in await app.workers()] != [worker.id]:  # written by the thread
            assert asyncio.get_running_loop().time() < deadline, "no heartbeat over this URL"
            await asyncio.sleep(0.1)
    finally:
        worker.stop()
        await asyncio.wait_for(running, 15)


def packed_connections(app: aioq.App) -> set[type]:
    pool = app.broker.redis.connection_pool
    return {type(c) for c in [*pool._available_connections, *pool._in_use_connections]}


async def test_tls_with_a_client_certificate(
    tls_url: tuple[str, tlsfiles.Certificates], prefix: str
) -> None:
    url, _ = tls_url
    app = aioq.App(url, prefix=prefix, visibility_timeout=2.0)
    try:
        await run_core_path(app)
        # every command went through the hiredis-packing TLS connection
        assert packed_connections(app) == {PackedSSLConnection}
    finally:
        await app.aclose()


async def test_tls_options_given_to_the_app(
    tls_url: tuple[str, tlsfiles.Certificates], prefix: str
) -> None:
    url, certs = tls_url
    bare = url.split("?")[0]
    app = aioq.App(
        bare,
        prefix=prefix,
        ssl_certfile=str(certs.crt("client")),
        ssl_keyfile=str(certs.key("client")),
        ssl_ca_certs=str(certs.ca),
    )
    try:
        await app.ping()
        assert packed_connections(app) == {PackedSSLConnection}
    finally:
        await app.aclose()


async def test_tls_without_a_client_certificate_is_refused(
    tls_url: tuple[str, tlsfiles.Certificates], prefix: str
) -> None:
    url, certs = tls_url
    app = aioq.App(
        url.split("?")[0], prefix=prefix, operation_timeout=3.0, ssl_ca_certs=str(certs.ca)
    )
    try:
        with pytest.raises(aioq.BrokerUnavailable):
            await app.ping()
    finally:
        await app.aclose()


async def test_unix_socket(unix_url: str, prefix: str) -> None:
    app = aioq.App(unix_url, prefix=prefix, visibility_timeout=2.0)
    try:
        await run_core_path(app)
        assert packed_connections(app) == {PackedUnixConnection}
    finally:
        await app.aclose()


def test_every_scheme_gets_hiredis_packing() -> None:
    from aioq._transport.connection import connect

    for url in ("redis://127.0.0.1:1/0", "rediss://127.0.0.1:1/0", "unix:///tmp/none.sock"):
        client = connect(url)
        assert issubclass(client.connection_pool.connection_class, HiredisPacking), url
    chosen = connect("redis://127.0.0.1:1/0", connection_class=redis.asyncio.Connection)
    assert chosen.connection_pool.connection_class is redis.asyncio.Connection  # caller wins


# -- a TLS Redis Cluster and a TLS Sentinel deployment, served by `aioq worker` --

TOPOLOGIES = [
    # each deployment starts once, on one xdist process (make test: --dist loadgroup)
    pytest.param("cluster", marks=pytest.mark.xdist_group("tls-cluster")),
    pytest.param("sentinel", marks=pytest.mark.xdist_group("tls-sentinel")),
]


@pytest.fixture(scope="module")
def tls_cluster(certificates: tlsfiles.Certificates) -> Iterator[str]:
    """``rediss+cluster://`` of a private 3-primary cluster, TLS only (``--port 0``,
    ``--tls-cluster yes``), the CA in the URL's query string."""
    with_cluster = _load_script("with_cluster")
    found = with_cluster.binaries()
    if found is None:
        pytest.skip(with_cluster.INSTALL_HINT)
    cluster = with_cluster.PrivateCluster(*found, replicas=0, tls=certificates)
    try:
        cluster.start()
    except SystemExit as exc:
        pytest.fail(f"could not start a local TLS Redis Cluster: {exc}")
    try:
        yield "rediss+cluster://" + cluster.url.split("://", 1)[1]
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def tls_sentinel(certificates: tlsfiles.Certificates) -> Iterator[str]:
    """``rediss+sentinel://…/aioq`` of a private primary + replica + 3 sentinels,
    all TLS only (``--tls-replication yes``), the CA in the URL's query string."""
    with_sentinel = _load_script("with_sentinel")
    deployment = with_sentinel.PrivateSentinel(redis_server(), tls=certificates)
    try:
        deployment.start()
    except SystemExit as exc:
        pytest.fail(f"could not start a local TLS Sentinel deployment: {exc}")
    try:
        yield deployment.url
    finally:
        deployment.stop()


@pytest.fixture
def tls_deployment(request: pytest.FixtureRequest) -> str:
    """The URL of the ``TOPOLOGIES`` param's deployment."""
    url: str = request.getfixturevalue(f"tls_{request.param}")
    return url


@pytest.fixture
async def tls_app(tls_deployment: str) -> AsyncIterator[aioq.App]:
    """``tests.tlsapp:app`` on the deployment, with a prefix of this test (the
    worker process loads the same app, from the same environment)."""
    prefix = f"aioqtest-{uuid.uuid4().hex[:10]}"
    tlsapp.app.__init__(tls_deployment, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for task in (tlsapp.add, tlsapp.flaky):
        tlsapp.app.registry.add(task.definition)
    yield tlsapp.app
    await tlsapp.app.aclose()


def plain(url: str) -> str:
    """``url`` without TLS: ``redis+…://`` and no certificates."""
    return url.split("?", 1)[0].replace("rediss+", "redis+", 1)


@contextmanager
def worker_process(app: aioq.App, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``aioq worker tests.tlsapp:app`` on ``app``'s URL and prefix, until it has
    registered its tasks; stopped (SIGTERM) at the end."""
    env = {"AIOQ_REDIS_URL": app.url, "AIOQ_TEST_PREFIX": app.prefix, "PYTHONPATH": str(ROOT)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aioq", "worker", "tests.tlsapp:app", "-c", "4"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while "task(s) registered" not in log.read_text():
            assert proc.poll() is None, f"the worker exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{log.read_text()}"
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.mark.parametrize("tls_deployment", TOPOLOGIES, indirect=True)
async def test_a_worker_process_serves_tls_cluster_and_sentinel(
    tls_app: aioq.App, tmp_path: Path
) -> None:
    """kiq → ``aioq worker`` → result, a retry, a delayed job, the worker's registry
    entry (written by its heartbeat thread's synchronous client) and ``aioq
    status``, all over TLS, the CA given in the URL alone."""
    app = tls_app
    with worker_process(app, tmp_path / "worker.log"):
        assert await (await tlsapp.add.kiq(2, 3)).result(timeout=15) == 5
        assert await (await tlsapp.flaky.kiq(7)).result(timeout=15) == [7, 2]  # one retry
        soon = await tlsapp.add.with_options(delay=0.2).kiq(1, 1)
        later = await tlsapp.add.with_options(delay=600).kiq(0, 0)
        assert await soon.result(timeout=15) == 2
        assert await later.state() is aioq.JobState.SCHEDULED
        deadline = time.monotonic() + 15
        while len(await app.workers()) != 1:
            assert time.monotonic() < deadline, "no registry entry from the worker"
            await asyncio.sleep(0.1)
        out = await asyncio.to_thread(
            run_cli, app.url, app.prefix, "status", "tests.tlsapp:app", "--json"
        )
        assert out.returncode == 0, out.stderr
        data = json.loads(out.stdout)
        assert {q["name"]: q for q in data["queues"]}["default"]["scheduled"] == 1
        assert len(data["workers"]) == 1


@pytest.mark.parametrize("tls_deployment", TOPOLOGIES, indirect=True)
async def test_certificates_given_to_the_app(
    tls_deployment: str, certificates: tlsfiles.Certificates
) -> None:
    """The other way to pass the CA: ``App(url, ssl_ca_certs=…)`` (every node, and
    the sentinels, get it)."""
    url = tls_deployment.split("?", 1)[0]
    prefix = f"aioqtest-{uuid.uuid4().hex[:10]}"
    app = aioq.App(url, prefix=prefix, ssl_ca_certs=str(certificates.ca))
    try:
        await app.ping()
    finally:
        await app.aclose()


@pytest.mark.parametrize("tls_deployment", TOPOLOGIES, indirect=True)
async def test_a_plain_url_to_tls_ports_fails_clearly(tls_deployment: str) -> None:
    """``redis+cluster://`` / ``redis+sentinel://`` to TLS-only ports: the client
    and the worker fail at once with a message that says TLS, no hang."""
    url = plain(tls_deployment)
    prefix = f"aioqtest-{uuid.uuid4().hex[:10]}"
    app = aioq.App(url, prefix=prefix, operation_timeout=5.0)

    @app.task
    async def nothing() -> None: ...

    try:
        with pytest.raises(aioq.BrokerUnavailable, match="rediss"):
            await app.ping()
        with pytest.raises(aioq.BrokerUnavailable, match="rediss"):
            await nothing.kiq()
    finally:
        await app.aclose()
    out = await asyncio.to_thread(
        run_cli, url, prefix, "worker", "tests.tlsapp:app", "--connect-timeout", "1"
    )
    last = out.stderr.strip().splitlines()[-1]
    assert out.returncode == 1 and "rediss" in last and "TLS" in last, out.stderr

"""TLS with client certificates (``rediss://``) and unix sockets (``unix://``):
the core path runs over both, on the hiredis-packing connections.

Each test starts its own redis-server: with ``--tls-port`` (``--port 0``,
``--tls-auth-clients yes``) and certificates made here with ``openssl``, or on a
unix socket. Skipped, saying why, when redis-server was built without TLS or
openssl is missing."""

from __future__ import annotations

import asyncio
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import redis

import aioq
from aioq._transport.connection import HiredisPacking, PackedSSLConnection, PackedUnixConnection
from aioq.testing.redis import free_port, redis_server


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(where: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all
    signed by the CA (``ca.crt``, ``server.{crt,key}``, ``client.{crt,key}``)."""
    _openssl(
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=aioq test CA"),
        cwd=where,
    )
    (where / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl(
            *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key"),
            *("-out", f"{name}.csr", "-subj", f"/CN=aioq test {name}"),
            cwd=where,
        )
        _openssl(
            *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
            *("-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", "san.ext"),
            cwd=where,
        )


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
            if "not built with TLS" in out or "TLS" in out and "support" in out:
                pytest.skip(f"redis-server was built without TLS: {out.strip()[-200:]}")
            pytest.fail(f"redis-server ({what}) exited: {out[-500:]}")
        if ready():  # type: ignore[operator]
            return
        time.sleep(0.05)
    pytest.fail(f"redis-server ({what}) did not start within 10 s")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if redis_server() is None or shutil.which("openssl") is None:
        pytest.skip("needs redis-server and openssl on PATH")
    where = tmp_path_factory.mktemp("certs")
    make_certificates(where)
    return where


@pytest.fixture
def tls_url(certificates: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``rediss://`` with the client certificate in the query string; and the
    directory holding the certificates."""
    certs = certificates
    port = free_port()
    server = Server(
        [
            *("--port", "0", "--tls-port", str(port)),
            *("--tls-cert-file", str(certs / "server.crt")),
            *("--tls-key-file", str(certs / "server.key")),
            *("--tls-ca-cert-file", str(certs / "ca.crt")),
            *("--tls-auth-clients", "yes"),
        ],
        tmp_path,
    )

    def answers() -> bool:
        context = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        context.load_cert_chain(certs / "client.crt", certs / "client.key")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                tls.sendall(b"PING\r\n")
                return tls.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    try:
        _wait(answers, server, "TLS")
        files = {
            "ssl_certfile": certs / "client.crt",
            "ssl_keyfile": certs / "client.key",
            "ssl_ca_certs": certs / "ca.crt",
        }
        query = "&".join(f"{k}={quote(str(v))}" for k, v in files.items())
        yield f"rediss://127.0.0.1:{port}/0?{query}", certs
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


async def test_tls_with_a_client_certificate(tls_url: tuple[str, Path], prefix: str) -> None:
    url, _ = tls_url
    app = aioq.App(url, prefix=prefix, visibility_timeout=2.0)
    try:
        await run_core_path(app)
        # every command went through the hiredis-packing TLS connection
        assert packed_connections(app) == {PackedSSLConnection}
    finally:
        await app.aclose()


async def test_tls_options_given_to_the_app(tls_url: tuple[str, Path], prefix: str) -> None:
    url, certs = tls_url
    bare = url.split("?")[0]
    app = aioq.App(
        bare,
        prefix=prefix,
        ssl_certfile=str(certs / "client.crt"),
        ssl_keyfile=str(certs / "client.key"),
        ssl_ca_certs=str(certs / "ca.crt"),
    )
    try:
        await app.ping()
        assert packed_connections(app) == {PackedSSLConnection}
    finally:
        await app.aclose()


async def test_tls_without_a_client_certificate_is_refused(
    tls_url: tuple[str, Path], prefix: str
) -> None:
    url, certs = tls_url
    app = aioq.App(
        url.split("?")[0],
        prefix=prefix,
        operation_timeout=3.0,
        ssl_ca_certs=str(certs / "ca.crt"),
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

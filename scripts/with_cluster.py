#!/usr/bin/env python3
"""Run a command with a Redis Cluster to talk to, exported as ``AIOQ_REDIS_CLUSTER_URL``.

    python scripts/with_cluster.py -- pytest tests/integration/test_cluster.py

1. ``AIOQ_REDIS_CLUSTER_URL`` set and its node answering ``cluster_state:ok``: use it.
2. Else start a private cluster of 3 primaries + 3 replicas (``redis-server
   --cluster-enabled yes`` on free loopback ports, each node in its own directory
   under one temp dir, then ``redis-cli --cluster create … --cluster-replicas 1``),
   wait until every node says ``cluster_state:ok``, run the command, stop every
   node and delete the temp dir.
3. Else exit with a message saying how to install Redis.

``--tls`` (before ``--``): the private cluster speaks TLS only (``--port 0
--tls-port P --tls-cluster yes --tls-replication yes``), with a CA and
certificates made by ``openssl`` in its temp dir (``tlsfiles.py``); the URL is
then ``rediss://127.0.0.1:PORT?ssl_ca_certs=…``.

The URL names one node (``redis://127.0.0.1:PORT``); a cluster client finds the
others from it. ``AIOQ_REDIS_CLUSTER_NODES`` lists every node as ``host:port,…``.

Never touches a Redis the user did not name, only ever binds 127.0.0.1. Standard
library only, like ``with_redis.py``.
"""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable


def _load_tlsfiles() -> Any:
    """``tlsfiles.py`` beside this script, loaded by path (this script is itself
    loaded by path from tests/conftest.py, with no package around it)."""
    name = "aioq_scripts_tlsfiles"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent / "tlsfiles.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


tlsfiles = _load_tlsfiles()

INSTALL_HINT = (
    "A Redis Cluster needs `redis-server` and `redis-cli` (7.0 or newer) on PATH.\n"
    "    Debian/Ubuntu: sudo apt-get install redis-server   (includes redis-cli)\n"
    "    macOS:         brew install redis\n"
    "  or point the tests at a cluster you own:\n"
    "    export AIOQ_REDIS_CLUSTER_URL=redis://127.0.0.1:7000"
)

HOST = "127.0.0.1"
BUS_OFFSET = 10000
"""Redis Cluster's bus port is the client port + 10000: both must be free."""


def command(
    port: int,
    *args: str,
    host: str = HOST,
    timeout: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> bytes | None:
    """Send one command in RESP (over TLS with a ``tls`` context) and return its
    reply's payload (a simple or bulk string; None on an error reply or no answer).
    No client library needed."""
    request = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
    )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            tlsfiles.wrap(raw, tls) as sock,
        ):
            sock.sendall(request)
            data = b""
            while b"\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    return None
                data += chunk
            head, _, rest = data.partition(b"\r\n")
            if head[:1] == b"+":
                return head[1:]
            if head[:1] != b"$" or head == b"$-1":
                return None
            size = int(head[1:])
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    return None
                rest += chunk
            return rest[:size]
    except (OSError, ValueError):
        return None


def cluster_ok(port: int, host: str = HOST, tls: ssl.SSLContext | None = None) -> bool:
    info = command(port, "CLUSTER", "INFO", host=host, tls=tls)
    return info is not None and b"cluster_state:ok" in info


def settled(port: int, replicas: int, host: str = HOST, tls: ssl.SSLContext | None = None) -> bool:
    """The node says ``cluster_state:ok``, sees ``replicas`` replicas and no node
    failing or still joining, and (if it is a replica) has synced with its primary."""
    if not cluster_ok(port, host, tls):
        return False
    nodes = command(port, "CLUSTER", "NODES", host=host, tls=tls)
    if nodes is None:
        return False
    lines = nodes.decode().splitlines()
    flags = [line.split()[2] for line in lines if len(line.split()) > 2]
    if sum("slave" in f for f in flags) != replicas:
        return False
    if any(bad in f for f in flags for bad in ("fail", "handshake", "noaddr")):
        return False
    if any("myself" in f and "slave" in f for f in flags):
        info = command(port, "INFO", "replication", host=host, tls=tls)
        return info is not None and b"master_link_status:up" in info
    return True


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports whose bus ports (+10000) are free too. Taken below
    the usual ephemeral range, so that port + 10000 stays a valid port."""
    ports: list[int] = []
    tries = 0
    while len(ports) < count:
        tries += 1
        if tries > 1000:
            raise SystemExit("no free loopback ports for a Redis Cluster")
        port = random.randint(20000, 29999)
        if port in ports or port + BUS_OFFSET in ports:
            continue
        if _bindable(port) and _bindable(port + BUS_OFFSET):
            ports.append(port)
    return ports


class PrivateCluster:
    """A throwaway Redis Cluster on 127.0.0.1 (``primaries`` primaries, each with
    ``replicas`` replicas), in its own temp dir.

    ``node_timeout_ms`` is ``cluster-node-timeout``: how long a primary may be
    unreachable before its replica is promoted (short, for fault tests).

    ``tls``: every node listens on a TLS port only, and nodes talk TLS to each
    other (cluster bus, replication); True makes a CA and certificates in the
    cluster's temp dir, or pass a ``tlsfiles.Certificates``."""

    def __init__(
        self,
        server: str,
        cli: str,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 2000,
        tls: Any = False,
    ) -> None:
        self.server = server
        self.cli = cli
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="aioq-cluster-")
        self.ports = free_ports(primaries * (1 + replicas))
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        if tls is True:
            os.makedirs(os.path.join(self.dir, "tls"))
            tls = tlsfiles.make(Path(self.dir, "tls"))
        self.tls = tls or None
        self.context: ssl.SSLContext | None = self.tls.context() if self.tls else None

    @property
    def url(self) -> str:
        """``redis://`` one node; with TLS ``rediss://`` and the CA in the query."""
        if self.tls is None:
            return f"redis://{HOST}:{self.ports[0]}"
        return f"rediss://{HOST}:{self.ports[0]}?{self.tls.query()}"

    @property
    def nodes(self) -> str:
        """Every node as ``host:port,…``."""
        return ",".join(f"{HOST}:{p}" for p in self.ports)

    def node_dir(self, port: int) -> str:
        return os.path.join(self.dir, str(port))

    def start_node(self, port: int) -> None:
        """Start (or restart, keeping its nodes.conf) the node on ``port``."""
        path = self.node_dir(port)
        os.makedirs(path, exist_ok=True)
        listen = ["--port", str(port)]
        if self.tls is not None:  # the bus port is then the TLS port + 10000
            listen = ["--port", "0", "--tls-port", str(port), *self.tls.server_args()]
            listen += ["--tls-cluster", "yes", "--tls-replication", "yes"]
        self.procs[port] = subprocess.Popen(
            [
                self.server,
                *listen,
                "--bind",
                HOST,
                "--dir",
                path,
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--save",
                "",
                "--appendonly",
                "no",
                # replicas sync at once (the default waits 5 s for more replicas)
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
                "--daemonize",
                "no",
                "--logfile",
                os.path.join(path, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait(self, ready: Callable[[int], bool], what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for port, proc in self.procs.items():
                if proc.poll() is not None:
                    self.stop()
                    raise SystemExit(
                        f"redis-server on port {port} exited with {proc.returncode} while "
                        f"waiting for {what}"
                    )
            if all(ready(port) for port in self.ports):
                return
            time.sleep(0.05)
        logs = self.dir
        self.stop(keep_dir=True)
        raise SystemExit(f"Redis Cluster: no {what} within {seconds:g} s; logs in {logs}")

    def answers(self, port: int) -> bool:
        """The node on ``port`` answers PING."""
        return command(port, "PING", tls=self.context) == b"PONG"

    def start(self) -> None:
        for port in self.ports:
            self.start_node(port)
        self._wait(self.answers, "PONG from every node", 10)
        tls = [] if self.tls is None else ["--tls", "--cacert", str(self.tls.ca)]
        create = subprocess.run(
            [
                self.cli,
                *tls,
                "--cluster",
                "create",
                *(f"{HOST}:{p}" for p in self.ports),
                "--cluster-replicas",
                str(self.replicas),
                "--cluster-yes",
            ],
            capture_output=True,
            timeout=60,
        )
        if create.returncode != 0:
            self.stop()
            raise SystemExit(
                "redis-cli --cluster create failed:\n" + create.stdout.decode(errors="replace")
            )
        replicas = len(self.ports) - len(self.ports) // (1 + self.replicas)
        self._wait(
            lambda port: settled(port, replicas, tls=self.context),
            "cluster_state:ok with every replica synced, on every node",
            30,
        )

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one node (SIGKILL by default) and reap it."""
        proc = self.procs[port]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(10)

    def stop(self, keep_dir: bool = False) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if not keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        return True  # TLS: cannot check without a client, so trust the user
    return cluster_ok(parsed.port or 6379, parsed.hostname or HOST)


def binaries() -> tuple[str, str] | None:
    """Paths of ``redis-server`` and ``redis-cli``, or None when either is missing."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


def main(argv: list[str]) -> int:
    options: list[str] = []
    if "--" in argv:
        options, argv = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if not argv or set(options) - {"--tls"}:
        print("usage: with_cluster.py [--tls] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    url = env.get("AIOQ_REDIS_CLUSTER_URL")
    cluster: PrivateCluster | None = None
    if url and reachable(url):
        print(f"[with_cluster] using AIOQ_REDIS_CLUSTER_URL={url}", file=sys.stderr)
    else:
        found = binaries()
        if found is None:
            print(INSTALL_HINT, file=sys.stderr)
            return 1
        cluster = PrivateCluster(*found, tls="--tls" in options)
        began = time.monotonic()
        cluster.start()
        env["AIOQ_REDIS_CLUSTER_URL"] = cluster.url
        env["AIOQ_REDIS_CLUSTER_NODES"] = cluster.nodes
        print(
            f"[with_cluster] started a private Redis Cluster ({cluster.nodes}) in "
            f"{time.monotonic() - began:.1f} s",
            file=sys.stderr,
        )
    proc = subprocess.Popen(argv, env=env)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
    finally:
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

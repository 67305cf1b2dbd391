#!/usr/bin/env python3
"""Run a command with a Redis Sentinel deployment to talk to, exported as
``AIOQ_REDIS_SENTINEL_URL``.

    python scripts/with_sentinel.py -- pytest tests/integration/test_sentinel.py

1. ``AIOQ_REDIS_SENTINEL_URL`` set and one of its sentinels answering: use it.
2. Else start a private deployment on free loopback ports, each process in its own
   directory under one temp dir: 1 primary + 1 replica (``redis-server``) and 3
   sentinels (``redis-server sentinel.conf --sentinel``) monitoring it as service
   ``aioq`` with quorum 2, ``down-after-milliseconds`` 1000 and ``failover-timeout``
   3000 (so a killed primary is replaced in ~2-3 s); wait until every sentinel sees
   the replica and both other sentinels, run the command, stop everything and
   delete the temp dir.
3. Else exit with a message saying how to install Redis.

``--tls`` (before ``--``): the private deployment speaks TLS only, data nodes and
sentinels (``--port 0 --tls-port P --tls-replication yes``; sentinels with
``tls-port`` and ``tls-replication yes``), with a CA and certificates made by
``openssl`` in its temp dir (``tlsfiles.py``); the URL is then
``rediss+sentinel://…/aioq?ssl_ca_certs=…``.

The URL is ``redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/aioq``.
``AIOQ_REDIS_SENTINEL_NODES`` lists the data nodes as ``host:port,…``.

Never touches a Redis the user did not name, only ever binds 127.0.0.1. Standard
library only, like ``with_redis.py`` and ``with_cluster.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    "A Redis Sentinel deployment needs `redis-server` (7.0 or newer) on PATH.\n"
    "    Debian/Ubuntu: sudo apt-get install redis-server   (also serves as redis-sentinel)\n"
    "    macOS:         brew install redis\n"
    "  or point the tests at sentinels you own:\n"
    "    export AIOQ_REDIS_SENTINEL_URL=redis+sentinel://127.0.0.1:26379/mymaster"
)

HOST = "127.0.0.1"
SERVICE = "aioq"


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("connection closed")
        self.buf += chunk

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n")
        return head

    def exact(self, size: int) -> bytes:
        while len(self.buf) < size + 2:
            self._fill()
        data, self.buf = self.buf[:size], self.buf[size + 2 :]
        return data

    def reply(self) -> Any:
        head = self.line()
        kind, rest = head[:1], head[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return RuntimeError(rest.decode(errors="replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            return None if rest == b"-1" else self.exact(int(rest))
        if kind == b"*":
            return None if rest == b"-1" else [self.reply() for _ in range(int(rest))]
        raise ValueError(f"unexpected RESP reply {head!r}")


def command(
    port: int,
    *args: str,
    host: str = HOST,
    timeout: float = 1.0,
    tls: ssl.SSLContext | None = None,
) -> Any:
    """Send one command in RESP (over TLS with a ``tls`` context) and return its
    reply (bytes, int, list, or a RuntimeError for an error reply); None when
    nothing answers."""
    request = b"*%d\r\n" % len(args) + b"".join(
        b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode()) for a in args
    )
    try:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            tlsfiles.wrap(raw, tls) as sock,
        ):
            sock.sendall(request)
            return _Reader(sock).reply()
    except (OSError, ValueError):
        return None


def info(port: int, section: str, tls: ssl.SSLContext | None = None) -> dict[str, str]:
    """``INFO section`` as a dict (empty when the node does not answer)."""
    reply = command(port, "INFO", section, tls=tls)
    if not isinstance(reply, bytes):
        return {}
    pairs = (line.split(":", 1) for line in reply.decode().splitlines() if ":" in line)
    return {k: v for k, v in pairs}


def master_address(
    sentinel_port: int, service: str = SERVICE, tls: ssl.SSLContext | None = None
) -> tuple[str, int] | None:
    """Where one sentinel says the service's master is (None: no answer)."""
    reply = command(sentinel_port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", service, tls=tls)
    if not isinstance(reply, list) or len(reply) != 2:
        return None
    return reply[0].decode(), int(reply[1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class PrivateSentinel:
    """A throwaway primary + ``replicas`` replicas + ``sentinels`` sentinels on
    127.0.0.1, in its own temp dir.

    ``down_after_ms`` is how long the primary may be silent before a sentinel
    calls it down; with a quorum of 2 the failover starts right after.

    ``tls``: every process listens on a TLS port only, and they talk TLS to each
    other (replication, sentinels' links); True makes a CA and certificates in
    the deployment's temp dir, or pass a ``tlsfiles.Certificates``."""

    def __init__(
        self,
        server: str,
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
        tls: Any = False,
    ) -> None:
        self.server = server
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.dir = tempfile.mkdtemp(prefix="aioq-sentinel-")
        ports: set[int] = set()
        while len(ports) < 1 + replicas + sentinels:
            ports.add(_free_port())
        ordered = sorted(ports)
        self.data_ports = ordered[: 1 + replicas]
        self.sentinel_ports = ordered[1 + replicas :]
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self._killed: set[int] = set()
        if tls is True:
            os.makedirs(os.path.join(self.dir, "tls"))
            tls = tlsfiles.make(Path(self.dir, "tls"))
        self.tls = tls or None
        self.context: ssl.SSLContext | None = self.tls.context() if self.tls else None

    @property
    def url(self) -> str:
        """``redis+sentinel://`` the sentinels; with TLS ``rediss+sentinel://`` and
        the CA in the query."""
        hosts = ",".join(f"{HOST}:{p}" for p in self.sentinel_ports)
        if self.tls is None:
            return f"redis+sentinel://{hosts}/{SERVICE}"
        return f"rediss+sentinel://{hosts}/{SERVICE}?{self.tls.query()}"

    @property
    def nodes(self) -> str:
        """The data nodes as ``host:port,…``."""
        return ",".join(f"{HOST}:{p}" for p in self.data_ports)

    def node_dir(self, port: int) -> str:
        path = os.path.join(self.dir, str(port))
        os.makedirs(path, exist_ok=True)
        return path

    def start_node(self, port: int, replica_of: int | None = None) -> None:
        """Start (or restart) the data node on ``port``, as a replica of
        ``replica_of`` when given."""
        path = self.node_dir(port)
        listen = ["--port", str(port)]
        if self.tls is not None:
            listen = ["--port", "0", "--tls-port", str(port), *self.tls.server_args()]
            listen += ["--tls-replication", "yes"]
        args = [
            self.server,
            *listen,
            "--bind",
            HOST,
            "--dir",
            path,
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
        ]
        if replica_of is not None:
            args += ["--replicaof", HOST, str(replica_of)]
        self.procs[port] = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start_sentinel(self, port: int) -> None:
        path = self.node_dir(port)
        conf = os.path.join(path, "sentinel.conf")  # Sentinel rewrites it: its own copy
        listen = f"port {port}\n"
        if self.tls is not None:  # and it tells the other sentinels its TLS port
            listen = f"port 0\ntls-port {port}\ntls-replication yes\n{self.tls.conf()}"
        with open(conf, "w") as f:
            f.write(
                listen + f"bind {HOST}\n"
                f"bind {HOST}\n"
                f"dir {path}\n"
                f"logfile {os.path.join(path, 'sentinel.log')}\n"
                f"sentinel monitor {SERVICE} {HOST} {self.data_ports[0]} {self.quorum}\n"
                f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
        self.procs[port] = subprocess.Popen(
            [self.server, conf, "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def _wait(self, ready: Callable[[], bool], what: str, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for port, proc in self.procs.items():
                if proc.poll() is not None and port not in self._killed:
                    logs = self.dir
                    self.stop(keep_dir=True)
                    raise SystemExit(
                        f"redis-server on port {port} exited with {proc.returncode} while "
                        f"waiting for {what}; logs in {logs}"
                    )
            if ready():
                return
            time.sleep(0.05)
        logs = self.dir
        self.stop(keep_dir=True)
        raise SystemExit(f"Redis Sentinel: no {what} within {seconds:g} s; logs in {logs}")

    def start(self) -> None:
        primary, *replicas = self.data_ports
        self.start_node(primary)
        for port in replicas:
            self.start_node(port, replica_of=primary)
        self._wait(self.replicated, "replica in sync", 10)
        for port in self.sentinel_ports:
            self.start_sentinel(port)
        self._wait(self.settled, "sentinel seeing the replica and every other sentinel", 20)

    def primary(self) -> int | None:
        """The data port every sentinel names as master (None: they disagree)."""
        seen = {master_address(p, tls=self.context) for p in self.sentinel_ports}
        if len(seen) != 1:
            return None
        (address,) = seen
        return None if address is None else address[1]

    def replicated(self) -> bool:
        """Every live replica's link to the primary is up."""
        for port in self.data_ports:
            if port in self._killed:
                continue
            role = info(port, "replication", self.context)
            if role.get("role") == "slave" and role.get("master_link_status") != "up":
                return False
            if not role:
                return False
        return True

    def settled(self) -> bool:
        """The sentinels agree on the master, which says it is one and has every
        live replica in sync, and each sentinel sees all those replicas and the
        other sentinels."""
        primary = self.primary()
        if primary is None or primary in self._killed:
            return False
        live = len(self.data_ports) - len(self._killed)
        if info(primary, "replication", self.context).get("role") != "master":
            return False
        if not self.replicated():
            return False
        want = f"status=ok,address={HOST}:{primary},slaves={live - 1},"
        want += f"sentinels={len(self.sentinel_ports)}"
        return all(
            want in info(p, "sentinel", self.context).get("master0", "")
            for p in self.sentinel_ports
        )

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: promote the replica now (the primary stays up and
        becomes a replica)."""
        reply = command(self.sentinel_ports[0], "SENTINEL", "FAILOVER", SERVICE, tls=self.context)
        if reply != b"OK":
            raise RuntimeError(f"SENTINEL FAILOVER: {reply!r}")

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one process (SIGKILL by default) and reap it."""
        proc = self.procs[port]
        if proc.poll() is None:
            proc.send_signal(sig)
            proc.wait(10)
        self._killed.add(port)

    def revive(self, port: int, seconds: float = 30) -> None:
        """Restart a killed data node as a replica of the current primary and wait
        until everything is settled again."""
        primary = self.primary()
        if primary is None:
            raise RuntimeError("the sentinels do not agree on a primary")
        self._killed.discard(port)
        self.start_node(port, replica_of=primary)
        self._wait(self.settled, "settled deployment after a restart", seconds)

    def wait_settled(self, seconds: float = 30) -> None:
        self._wait(self.settled, "settled deployment", seconds)

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
    """One of the URL's sentinels answers PING (TLS: trusted, cannot check)."""
    scheme, _, rest = url.partition("://")
    if scheme != "redis+sentinel":
        return True
    hosts = rest.rsplit("@", 1)[-1].split("/", 1)[0]
    for item in hosts.split(","):
        host, _, port = item.rpartition(":")
        if port.isdigit() and command(int(port), "PING", host=host or HOST) == b"PONG":
            return True
    return False


def binary() -> str | None:
    return shutil.which("redis-server")


def main(argv: list[str]) -> int:
    options: list[str] = []
    if "--" in argv:
        options, argv = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    if not argv or set(options) - {"--tls"}:
        print("usage: with_sentinel.py [--tls] -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    url = env.get("AIOQ_REDIS_SENTINEL_URL")
    deployment: PrivateSentinel | None = None
    if url and reachable(url):
        print(f"[with_sentinel] using AIOQ_REDIS_SENTINEL_URL={url}", file=sys.stderr)
    else:
        server = binary()
        if server is None:
            print(INSTALL_HINT, file=sys.stderr)
            return 1
        deployment = PrivateSentinel(server, tls="--tls" in options)
        began = time.monotonic()
        deployment.start()
        env["AIOQ_REDIS_SENTINEL_URL"] = deployment.url
        env["AIOQ_REDIS_SENTINEL_NODES"] = deployment.nodes
        print(
            f"[with_sentinel] started a private Sentinel deployment ({deployment.url}, data "
            f"nodes {deployment.nodes}) in {time.monotonic() - began:.1f} s",
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
        if deployment is not None:
            deployment.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

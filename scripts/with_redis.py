#!/usr/bin/env python3
"""Run a command with a Redis to talk to, exported as ``AIOQ_REDIS_URL``.

    python scripts/with_redis.py -- pytest tests/

1. ``AIOQ_REDIS_URL`` set and answering PING: use it (the user pointed us there).
2. Else start a private ``redis-server`` on a free loopback port in a temp dir
   (no persistence), run the command, stop the server and delete the dir.
3. Else exit with a message saying how to install Redis.

Never touches a Redis the user did not name. Standard library only: it runs
before any virtualenv exists.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse

INSTALL_HINT = (
    "aioq needs a Redis server (7.0 or newer) for this command, and none was found.\n"
    "  Either install one so that `redis-server` is on PATH:\n"
    "    Debian/Ubuntu: sudo apt-get install redis-server\n"
    "    macOS:         brew install redis\n"
    "    Fedora:        sudo dnf install redis\n"
    "  or point aioq at a running server you own:\n"
    "    export AIOQ_REDIS_URL=redis://127.0.0.1:6379/15"
)


def _ping(host: str, port: int, password: str | None = None, timeout: float = 1.0) -> bool:
    """A raw RESP PING (no redis-py needed before the venv exists)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if password:
                sock.sendall(
                    b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(password), password.encode())
                )
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def reachable(url: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme != "redis":
        return True  # TLS or a unix socket: cannot check without a client, so trust the user
    return _ping(parsed.hostname or "127.0.0.1", parsed.port or 6379, parsed.password)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivateRedis:
    """A throwaway ``redis-server`` on 127.0.0.1, in its own temp dir."""

    def __init__(self, binary: str, persistence: list[str] | None = None) -> None:
        self.binary = binary
        self.dir = tempfile.mkdtemp(prefix="aioq-redis-")
        self.port = free_port()
        self.persistence = persistence or ["--appendonly", "no"]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                self.dir,
                "--save",
                "",
                *self.persistence,
                "--daemonize",
                "no",
                "--logfile",
                os.path.join(self.dir, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(
                    f"redis-server exited with {self.proc.returncode}; see its log in {self.dir}"
                )
            if _ping("127.0.0.1", self.port):
                return
            time.sleep(0.05)
        self.stop()
        raise SystemExit("redis-server did not answer within 10 s")

    def kill(self) -> None:
        """SIGKILL the server (its directory, and any AOF in it, stay for a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: with_redis.py -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    env = dict(os.environ)
    url = env.get("AIOQ_REDIS_URL")
    server: PrivateRedis | None = None
    if url and reachable(url):
        print(f"[with_redis] using AIOQ_REDIS_URL={url}", file=sys.stderr)
    else:
        if url:
            print(
                f"[with_redis] AIOQ_REDIS_URL={url} does not answer; starting a private "
                "redis-server instead",
                file=sys.stderr,
            )
        binary = shutil.which("redis-server")
        if binary is None:
            print(INSTALL_HINT, file=sys.stderr)
            return 1
        server = PrivateRedis(binary)
        server.start()
        env["AIOQ_REDIS_URL"] = server.url
        env["AIOQ_PRIVATE_REDIS"] = "1"
        env["AIOQ_REDIS_SERVER"] = binary
        print(f"[with_redis] started a private redis-server at {server.url}", file=sys.stderr)
    proc = subprocess.Popen(argv, env=env)
    try:
        while True:
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

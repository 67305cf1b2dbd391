"""A Redis to test against: the one ``AIOQ_REDIS_URL`` names when it answers, else a
private ``redis-server`` on a free loopback port (no persistence, own temp dir).

Shared by ``scripts/with_redis.py``, the project's own tests and the pytest plugin
(``aioq.testing.plugin``). Standard library only: ``scripts/with_redis.py`` loads
this file by path before any virtualenv (or redis-py) exists.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
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


def user_url() -> str | None:
    """``AIOQ_REDIS_URL`` when it is set and answers, else None."""
    url = os.environ.get("AIOQ_REDIS_URL")
    return url if url and reachable(url) else None


def redis_server() -> str | None:
    """The ``redis-server`` binary on PATH, or None."""
    return shutil.which("redis-server")

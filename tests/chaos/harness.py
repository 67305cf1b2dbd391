"""Real processes and real Redis servers for the chaos suite.

Scale: ``AIOQ_CHAOS=full`` runs the sizes the issue names (``make chaos``);
otherwise a bounded version runs (CI, ``make test``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from tests.conftest import _load_with_redis

ROOT = Path(__file__).resolve().parents[2]
_with_redis = _load_with_redis()
FULL = os.environ.get("AIOQ_CHAOS") == "full"


def scale(ci: int, full: int) -> int:
    return full if FULL else ci


class RedisServer(_with_redis.PrivateRedis):  # type: ignore[misc,name-defined]
    """A private redis-server on loopback that tests may kill and restart."""

    def __init__(self, *, aof: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("the chaos suite needs a redis-server binary")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if aof else None
        super().__init__(binary, persistence)
        self.start()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


@dataclass
class Fleet:
    """Worker processes of tests.chaos.chaosapp:app, killed and restarted at will."""

    env: dict[str, str]
    logdir: Path
    concurrency: int = 16
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    started: int = 0
    kills: int = 0
    log_of: dict[int, Path] = field(default_factory=dict)

    def spawn(self, *extra: str) -> subprocess.Popen[bytes]:
        with open(self.logdir / f"worker{self.started}.log", "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "aioq",
                    "worker",
                    "tests.chaos.chaosapp:app",
                    "-c",
                    str(self.concurrency),
                    "--grace",
                    "10",
                    *extra,
                ],
                env=self.env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started += 1
        self.procs.append(proc)
        self.log_of[proc.pid] = self.logdir / f"worker{self.started - 1}.log"
        return proc

    def wait_logged(self, proc: subprocess.Popen[bytes], text: str, timeout: float = 30) -> None:
        """Wait until ``proc``'s log shows ``text`` (e.g. that it is up and reading)."""
        log = self.log_of[proc.pid]
        wait_until(lambda: text in log.read_text(errors="replace"), timeout, f"{text!r} in {log}")

    def alive(self) -> list[subprocess.Popen[bytes]]:
        return [p for p in self.procs if p.poll() is None]

    def kill_one(self, rng: random.Random) -> None:
        victim = rng.choice(self.alive())
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        self.kills += 1

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.logdir.glob("*.log")))

    def stop(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class FreezingProxy:
    """A TCP proxy in front of Redis that can freeze: while frozen it moves no
    byte in either direction (connections stay open, like a partition); when
    thawed, whatever the client sent meanwhile reaches Redis late."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.open = asyncio.Event()
        self.open.set()
        self.server: asyncio.Server | None = None
        self.port = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        self.open.clear()

    def thaw(self) -> None:
        self.open.set()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        for src, dst in ((client_r, server_w), (server_r, client_w)):
            task = asyncio.create_task(self._pump(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.open.wait()
                data = await src.read(65536)
                await self.open.wait()
                if not data:
                    break
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            dst.close()

    async def stop(self) -> None:
        self.thaw()
        for task in list(self._tasks):
            task.cancel()
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

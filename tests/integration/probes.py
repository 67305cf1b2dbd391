"""Helpers for tests that talk HTTP to a worker's probes and metrics endpoints."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import time

SPAN = 4
"""Ports a probe test may use from the one it is given: the port, and under
``-w N`` the children's (port + 1 + slot)."""


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A free port, with the next ``SPAN - 1`` free too, below the kernel's
    ephemeral range (where every client connection of the suite takes its local
    port, and where an OS-picked port's neighbours are soon taken) and apart from
    the local clusters' 20000-39999: 11000-18999, a block of 2,000 per pytest-xdist
    process so that parallel tests do not pick the same one."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    base = 11000 + 2000 * (index % 4)
    while True:
        port = random.randrange(base, base + 2000 - SPAN)
        if all(_bindable(port + i) for i in range(SPAN)):
            return port


async def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET ``path`` from 127.0.0.1:``port``: (status, body)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read()
        finally:
            writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def wait_status(port: int, path: str, status: int, within: float = 10.0) -> str:
    """Poll ``path`` until it answers ``status``; returns the body."""
    deadline = time.monotonic() + within
    seen: tuple[int, str] | None = None
    while time.monotonic() < deadline:
        try:
            seen = await get(port, path, timeout=2.0)
        except (OSError, TimeoutError) as exc:
            seen = (-1, repr(exc))
        if seen[0] == status:
            return seen[1]
        await asyncio.sleep(0.1)
    raise AssertionError(f"{path} never answered {status} within {within}s; last {seen}")

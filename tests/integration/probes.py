"""Helpers for tests that talk HTTP to a worker's probes and metrics endpoints."""

from __future__ import annotations

import asyncio
import socket
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
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

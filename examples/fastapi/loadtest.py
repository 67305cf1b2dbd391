"""100 concurrent clients against the FastAPI example under uvicorn.

Starts ``aioq worker examples.fastapi.tasks:app`` and ``uvicorn
examples.fastapi.main:api`` on loopback, then keeps ``--concurrency`` clients
busy: each sends ``add`` by name (``POST /tasks/…``) and waits for its result
(``GET /jobs/{id}``), ``--requests`` times in all. Prints the latency of each
send + result pair and the pairs per second, and for scale the requests per
second of a plain endpoint (``GET /openapi.json``) on the same server and
clients. Needs ``$AIOQ_REDIS_URL``::

    python scripts/with_redis.py -- python -m examples.fastapi.loadtest
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid

import httpx
import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def one(http: httpx.AsyncClient, i: int) -> float:
    began = time.perf_counter()
    sent = await http.post("/tasks/examples.fastapi.tasks.add", json={"args": [i, 1]})
    sent.raise_for_status()
    done = await http.get(f"/jobs/{sent.json()['job']}", params={"timeout": 30})
    done.raise_for_status()
    if done.json().get("result") != i + 1:
        raise AssertionError(f"wrong answer: {done.json()}")
    return time.perf_counter() - began


async def load(base: str, requests: int, concurrency: int) -> tuple[list[float], float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        await asyncio.gather(*(one(http, i) for i in range(concurrency)))  # warm up
        queue = iter(range(requests))
        latencies: list[float] = []

        async def client() -> None:
            latencies.extend([await one(http, i) for i in queue])

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return latencies, time.perf_counter() - began


async def baseline(base: str, requests: int, concurrency: int) -> float:
    """Requests/s of ``GET /openapi.json`` (no aioq): what the HTTP stack alone does."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as http:
        queue = iter(range(requests))

        async def client() -> None:
            for _ in queue:
                (await http.get("/openapi.json")).raise_for_status()

        began = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return requests / (time.perf_counter() - began)


def wait_ready(base: str, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise SystemExit(f"a process exited with {proc.returncode}")
        try:
            if httpx.get(base + "/openapi.json", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("uvicorn did not start within 30 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("AIOQ_REDIS_URL")
    if not url:
        raise SystemExit("set AIOQ_REDIS_URL (or run under scripts/with_redis.py)")
    prefix = f"aioq-load-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "AIOQ_PREFIX": prefix}
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "aioq", "worker", "examples.fastapi.tasks:app", "-c", "200"],
            env=env,
        ),
        subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "examples.fastapi.main:api"]
            + ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env=env,
        ),
    ]
    try:
        wait_ready(base, procs)
        plain = asyncio.run(baseline(base, args.requests, args.concurrency))
        latencies, elapsed = asyncio.run(load(base, args.requests, args.concurrency))
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        for i in range(0, len(keys), 500):
            client.delete(*keys[i : i + 500])
        client.close()
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    print(
        f"{len(ms)} send+result pairs, {args.concurrency} concurrent clients: "
        f"{len(ms) / elapsed:,.0f} pairs/s; latency ms p50 {q[49]:.1f} p95 {q[94]:.1f} "
        f"p99 {q[98]:.1f} max {ms[-1]:.1f}\n"
        f"baseline without aioq (GET /openapi.json, same clients): {plain:,.0f} requests/s; "
        f"a pair is 2 requests"
    )


if __name__ == "__main__":
    main()

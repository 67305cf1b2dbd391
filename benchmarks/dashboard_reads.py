"""What the dashboard's reads cost: latency of its JSON API calls against a real
Redis with a backlog (the dashboard adds nothing to the workers' per-task path;
it only reads, and only while a page is open).

    python scripts/with_redis.py -- python benchmarks/dashboard_reads.py [BACKLOG]

Sends BACKLOG (default 2,000) jobs to one queue and 100 to each of 4 others, then
times 200 calls of each endpoint through httpx's ASGI transport (the HTTP server
is left out) and prints the median and p95 in milliseconds."""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import httpx

import aioq
from aioq.dashboard import create_app

app = aioq.App(os.environ.get("AIOQ_REDIS_URL", "redis://127.0.0.1:6379/0"), prefix="dashbench")


@app.task
async def noop(n: int) -> None:
    pass


async def main(backlog: int) -> None:
    last = None
    for i in range(0, backlog, 500):
        jobs = await noop.kiq_many([(n,) for n in range(i, min(backlog, i + 500))])
        last = jobs[-1]
    for q in ("q1", "q2", "q3", "q4"):
        await noop.with_options(queue=q).kiq_many([(n,) for n in range(100)])
    assert last is not None
    calls = {
        "/api/status": "/api/status",
        "/api/jobs?state=queued&limit=50": "/api/jobs?state=queued&limit=50",
        "/api/jobs/{id} (last of the backlog)": f"/api/jobs/{last.id}",
        "/ (overview page)": "/",
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(app)), base_url="http://bench"
    ) as c:
        print(f"backlog {backlog} on 'default', 100 on each of q1..q4; 200 calls each")
        for label, path in calls.items():
            took = []
            for _ in range(200):
                t0 = time.perf_counter()
                r = await c.get(path)
                took.append((time.perf_counter() - t0) * 1000)
                assert r.status_code == 200, r.text
            took.sort()
            p95 = took[int(len(took) * 0.95)]
            print(f"{label:40s} median {statistics.median(took):6.2f} ms   p95 {p95:6.2f} ms")
    for q in ("default", "q1", "q2", "q3", "q4"):
        await app.purge(q)
    await app.aclose()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 2000))

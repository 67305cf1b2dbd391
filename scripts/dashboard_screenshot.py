"""Take the dashboard screenshots of docs/operations.md: a small live system (two
workers, three queues, a steady flow of jobs, a few failures, a dead letter, a
retry waiting, a backlog nobody reads) seen in headless Chromium.

    python scripts/with_redis.py -- python scripts/dashboard_screenshot.py [OUT_DIR]

Needs the dev extra (playwright) and Debian's chromium; writes dashboard.png and
dashboard-job.png into OUT_DIR (default docs/img)."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import socket
import sys
from pathlib import Path

import uvicorn
from playwright.async_api import async_playwright

import aioq
from aioq.dashboard import create_app
from aioq.testing import running_worker

app = aioq.App(os.environ.get("AIOQ_REDIS_URL", "redis://127.0.0.1:6379/0"), prefix="demo")


@app.task(queue="emails", name="emails.send")
async def send_email(to: str) -> str:
    await asyncio.sleep(random.uniform(0.01, 0.05))
    return f"sent to {to}"


@app.task(queue="reports", name="reports.build", retries=2, retry_backoff=60)
async def build_report(ctx: aioq.Context, month: str, pages: int) -> int:
    for page in range(pages):
        await ctx.progress(page + 1, pages)
        await asyncio.sleep(0.1)
    if month == "2026-02":
        raise RuntimeError("ledger for 2026-02 is locked")
    return pages


@app.task(name="images.resize")
async def resize(image: str, width: int) -> str:
    await asyncio.sleep(random.uniform(0.005, 0.02))
    if image.endswith(".bmp"):
        raise ValueError(f"unsupported format: {image}")
    return f"{image}@{width}"


@app.task(queue="archive", name="archive.store")
async def archive(path: str) -> None:
    """Nobody reads this queue in the demo: its backlog grows."""


async def traffic(stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        await send_email.kiq(f"user{n}@example.org")
        await resize.kiq(f"photo{n}.{'bmp' if n % 25 == 0 else 'jpg'}", 640)
        if n % 3 == 0:
            await archive.kiq(f"/data/{n}.tar")
        await asyncio.sleep(random.uniform(0.01, 0.06))


async def main(out: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "apt-get install -y chromium"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(app, poll_interval=1.0),
            host="127.0.0.1",
            port=port,
            lifespan="off",
            log_level="warning",
        )
    )
    serving = asyncio.create_task(server.serve())
    stop = asyncio.Event()
    async with (
        running_worker(app, queues=["default", "emails"], concurrency=20),
        running_worker(app, queues=["reports", "default"], concurrency=4),
        async_playwright() as pw,
    ):
        await app.send("images.thumbnail", args=["cat.png"])  # a task no worker has
        report = await build_report.kiq("2026-01", 40)
        await build_report.kiq("2026-02", 3)
        flow = asyncio.create_task(traffic(stop))
        browser = await pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = await browser.new_page(viewport={"width": 1360, "height": 860})
        await page.goto(f"http://127.0.0.1:{port}/")
        await asyncio.sleep(20)  # the throughput chart fills
        await page.screenshot(path=out / "dashboard.png")
        await page.goto(f"http://127.0.0.1:{port}/jobs/{report.id}")
        await asyncio.sleep(1.5)
        await page.screenshot(path=out / "dashboard-job.png")
        await browser.close()
        stop.set()
        await flow
        await app.purge("archive")
        for queue in ("default", "emails", "reports"):
            await app.purge(queue)
        await app.purge_dead()
    server.should_exit = True
    await serving
    await app.aclose()


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img")
    target.mkdir(parents=True, exist_ok=True)
    asyncio.run(main(target))
    print(f"wrote {target / 'dashboard.png'} and {target / 'dashboard-job.png'}")

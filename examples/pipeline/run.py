"""``make pipeline``: a worker process, one workflow, live progress, the report."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

import aioq
from examples.pipeline.tasks import analyse, app, fetch, summarize

ROOT = Path(__file__).resolve().parents[2]
SIZE = 40


def start_worker() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aioq",
            "worker",
            "examples.pipeline.tasks:app",
            "-c",
            "50",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def show(update: aioq.JobUpdate, tty: bool) -> None:
    p = update.progress
    if p is None or not p.total or not (tty or p.current % 10 == 0):
        return
    done = int(30 * p.current / p.total)
    bar = f"  fetching [{'#' * done}{'.' * (30 - done)}] {p.current:.0f}/{p.total:.0f}"
    print(f"\r{bar}" if tty else bar, end="" if tty else "\n", flush=True)


async def main() -> None:
    worker = start_worker()
    try:
        workflow = aioq.chain(
            fetch.s(7, SIZE), aioq.chord([analyse.s(i) for i in range(SIZE)], summarize.s())
        )
        report = await workflow.kiq()  # the handle of the last step (summarize)
        analyses = report.parent  # the group's handle
        fetched = analyses.parent  # the first step's job
        print(
            f"workflow sent: fetch {fetched.id} -> {len(analyses.jobs)} x analyse -> "
            f"summarize {report.id}"
        )
        # The fetch step reports progress; the worker pushes each report to us.
        tty = sys.stdout.isatty()
        async for update in fetched.updates():
            show(update, tty)
        if tty:
            print()
        summary = await report.result(timeout=60)
        states = await analyses.states()
        ok = sum(s is aioq.JobState.SUCCEEDED for s in states)
        print(f"  analyse: {ok}/{len(states)} succeeded")
        print(f"report: {summary}")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
        redis = Redis.from_url(app.url)
        async for key in redis.scan_iter(match=f"{app.prefix}:*", count=1000):
            await redis.delete(key)
        await redis.aclose()
        await app.aclose()


if __name__ == "__main__":
    asyncio.run(main())

"""``make demo``: a worker process, a few hundred real tasks, live progress, results.

It starts ``aioq worker examples.quickstart.tasks:app`` as a child process,
enqueues work from this async client, shows progress as jobs finish, prints
the results, then stops the worker with SIGTERM (a clean drain).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from redis.asyncio import Redis

import aioq
from examples.quickstart.tasks import (
    Thumbnail,
    app,
    checksum,
    flaky,
    import_rows,
    make_thumbnail,
)

ROOT = Path(__file__).resolve().parents[2]


def start_worker() -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aioq",
            "worker",
            "examples.quickstart.tasks:app",
            "-c",
            "50",
            "--log-level",
            "error",
        ],
        cwd=ROOT,
        env=env,
    )


def bar(done: int, total: int, width: int = 40) -> str:
    filled = width * done // total
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


async def track(label: str, jobs: list[aioq.Job[object]]) -> list[object]:
    """Await every job, redrawing a progress bar as each one finishes."""
    done = 0
    results: list[object] = [None] * len(jobs)

    async def one(i: int, job: aioq.Job[object]) -> None:
        nonlocal done
        try:
            results[i] = await job.result(timeout=60)
        except aioq.TaskFailed as exc:
            results[i] = exc
        done += 1
        if sys.stdout.isatty():
            print(f"\r  {label:<12} {bar(done, len(jobs))}", end="", flush=True)
        elif done == len(jobs) or done % max(1, len(jobs) // 4) == 0:
            print(f"  {label:<12} {bar(done, len(jobs))}", flush=True)

    await asyncio.gather(*(one(i, j) for i, j in enumerate(jobs)))
    if sys.stdout.isatty():
        print()
    return results


async def main() -> None:
    print(f"Redis: {app.url}")
    worker = start_worker()
    try:
        await app.ping()
        started = time.perf_counter()

        # 1. A single task, enqueued and awaited (no polling: the worker notifies us).
        job = await make_thumbnail.kiq(1, width=256)
        thumb = await job.result(timeout=30)
        print(f"one job     {job.id} -> {thumb}")

        # 2. Two hundred async tasks, enqueued concurrently (auto-batched).
        thumbs = await asyncio.gather(*(make_thumbnail.kiq(i) for i in range(200)))
        out = await track("thumbnails", list(thumbs))
        assert all(isinstance(t, Thumbnail) for t in out)

        # 3. Sync CPU work on another queue, enqueued with the batch API.
        sums = await checksum.kiq_many([(f"file-{i}".encode(), 2000) for i in range(50)])
        digests = await track("checksums", list(sums))

        # 4. Some failures: the remote error comes back as aioq.TaskFailed.
        squares = await flaky.kiq_many([(n,) for n in range(1, 51)])
        squared = await track("squares", list(squares))
        failures = [r for r in squared if isinstance(r, aioq.TaskFailed)]

        # 5. By name, as another service would send it (Celery's send_task).
        by_name = await app.send("reports.checksum", args=[b"hello", 1])

        # 6. A task that reports progress; the worker pushes each report to us.
        importing = await import_rows.kiq(100)
        async for update in importing.updates():
            if update.progress is not None and update.progress.total:
                current, total = int(update.progress.current), int(update.progress.total)
                if sys.stdout.isatty():
                    print(f"\r  {'import':<12} {bar(current, total)}", end="", flush=True)
                elif current % 25 == 0:
                    print(f"  {'import':<12} {bar(current, total)}", flush=True)
        if sys.stdout.isatty():
            print()
        imported = await importing.result(timeout=30)
        elapsed = time.perf_counter() - started

        print(f"\n{len(out) + len(digests) + len(squared) + 3} jobs in {elapsed:.2f}s")
        print(f"  first thumbnail: {out[0]}")
        print(f"  checksum of file-0: {digests[0]}")
        print(
            f"  {len(failures)} of 50 squares failed as designed, e.g. "
            f"{failures[0].type}: {failures[0].message}"
        )
        print(f"  sent by name: reports.checksum(b'hello', 1) = {await by_name.result(10)}")
        print(f"  imported {imported} rows, progress pushed by the worker as it went")
        info = await job.info()
        print(
            f"  job record: state={info.state.value} attempts={info.attempts} worker={info.worker}"
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
        print(f"worker stopped cleanly (exit code {code})")
        await cleanup()
        await app.aclose()
    if code != 0:
        raise SystemExit(code)


async def cleanup() -> None:
    """Delete the demo's keys so a Redis you pointed us at is left as it was."""
    redis = Redis.from_url(app.url)
    keys = [k async for k in redis.scan_iter(match=f"{app.prefix}:*", count=1000)]
    for i in range(0, len(keys), 500):
        await redis.delete(*keys[i : i + 500])
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())

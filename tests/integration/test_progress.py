"""Progress reports, job.updates(), and aioq.gather."""

from __future__ import annotations

import asyncio

import aioq
from tests.conftest import WorkerRunner, on_cluster_too


@on_cluster_too
async def test_progress_is_recorded_and_streamed(app: aioq.App, workers: WorkerRunner) -> None:
    release = asyncio.Event()

    @app.task
    async def steps(ctx: aioq.Context, n: int) -> str:
        for i in range(1, n + 1):
            await ctx.progress(i, total=n, stage=f"step {i}")
            await asyncio.sleep(0.05)
        await release.wait()
        return "done"

    await workers.start(app)
    job = await steps.kiq(3)
    seen: list[aioq.JobUpdate] = []

    async def watch() -> None:
        async for update in job.updates():
            seen.append(update)
            if update.progress is not None and update.progress.current == 3:
                info = await job.info()
                assert info.progress is not None and info.progress.info == {"stage": "step 3"}
                release.set()

    await asyncio.wait_for(watch(), 10)
    progress = [u.progress.current for u in seen if u.progress is not None]
    assert progress[-1] == 3 and progress == sorted(progress)
    assert all(u.progress.total == 3 for u in seen if u.progress is not None)
    assert seen[-1].state is aioq.JobState.SUCCEEDED and seen[-1].is_final
    assert await job.result(timeout=5) == "done"
    # Watching a finished job yields its final state at once.
    assert [u.state async for u in job.updates()] == [aioq.JobState.SUCCEEDED]


async def test_progress_of_a_direct_call_is_a_no_op(app: aioq.App) -> None:
    @app.task
    async def steps(ctx: aioq.Context) -> int:
        await ctx.progress(1, total=1)
        return 1

    assert await steps() == 1


async def test_gather(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def square(x: int) -> int:
        return x * x

    await workers.start(app)
    jobs = await square.kiq_many([(i,) for i in range(50)])
    assert await aioq.gather(*jobs, timeout=10) == [i * i for i in range(50)]

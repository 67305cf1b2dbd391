"""Static checks of the public API's types, run by ``mypy --strict --warn-unused-ignores``.

Each ``# type: ignore[...]`` below is a negative case: if the error it
silences ever stops being reported, mypy fails on the unused ignore.
This file is type-checked, never executed.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, assert_type

import aioq
from aioq import AsyncTask

app = aioq.App("redis://127.0.0.1:6379/0")


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="math.mul", queue="math", timeout=30.0, result_ttl=600.0, store_result=True)
def mul(x: int, y: int) -> int:
    return x * y


@app.task
async def with_ctx(ctx: aioq.Context, name: str) -> str:
    return f"{ctx.job_id}:{name}"


@app.task
def sync_with_ctx(ctx: aioq.Context, n: int) -> list[int]:
    return [n]


@app.task(cron="*/5 * * * *", tz="Asia/Seoul", rate_limit="10/s", max_running=2, priority=3)
async def report() -> str:
    return "ok"


@app.periodic(every=30.0)
async def heartbeat() -> int:
    return 1


app.routes({"reports.*": "reports", "images.resize": {"queue": "images", "priority": 5}})
app.schedule(add.s(1, 2), every=60.0, name="add-every-minute")


async def usage() -> None:
    async_task: aioq.Task[[int, int], int] = add
    sync_task: aioq.Task[[int, int], int] = mul
    del async_task, sync_task

    job = await add.kiq(1, 2)
    assert_type(job, aioq.Job[int])
    assert_type(await job.result(timeout=10), int)
    assert_type(await job.state(), aioq.JobState)
    assert_type(await job.info(), aioq.JobInfo)

    assert_type(await mul.kiq(2, 3), aioq.Job[int])
    assert_type(await add.with_options(queue="other").kiq(1, 2), aioq.Job[int])
    assert_type(await add.kiq_many([(1, 2), (3, 4)]), list[aioq.Job[int]])

    # The context parameter is injected by the worker, never passed by callers.
    assert_type(await with_ctx.kiq("x"), aioq.Job[str])
    assert_type(await sync_with_ctx.kiq(3), aioq.Job[list[int]])

    # Direct calls still run the function: async tasks give an awaitable.
    assert_type(await add(1, 2), int)
    assert_type(mul(2, 3), int)

    sent = await app.send("math.mul", args=[2, 3], kwargs={}, queue="math")
    assert_type(sent, aioq.Job[Any])
    assert_type(app.job(sent.id), aioq.Job[Any])

    assert_type(await job.abort(), bool)
    async for update in job.updates():
        assert_type(update, aioq.JobUpdate)
    assert_type(await aioq.gather(job, sent), list[Any])
    assert_type(await app.dead_letters("default"), list[aioq.DeadLetter])
    assert_type(await add.with_options(delay=5.0, retries=2).kiq(1, 2), aioq.Job[int])

    sig = add.s(1, 2)
    assert_type(sig, aioq.Signature[int])
    assert_type(await sig.kiq(), aioq.Job[int])
    assert_type(sig | mul.s(3), aioq.Chain)
    assert_type(aioq.chain(add.s(1, 2), mul.s(3)), aioq.Chain)
    assert_type(await aioq.group([add.s(1, 2), add.s(3, 4)]).kiq(), aioq.GroupJob)
    assert_type(aioq.group(add.s(1, 2), add.s(3, 4)), aioq.Group)
    assert_type(aioq.chord([add.s(1, 2)], mul.s(2)), aioq.Chord)
    assert_type(app.signature("math.mul", args=[2]), aioq.Signature[Any])

    assert_type(report, AsyncTask[[], str])
    assert_type(heartbeat, AsyncTask[[], int])
    assert_type(
        await add.with_options(priority=9, job_id="a", unique_for=5.0).kiq(1, 2), aioq.Job[int]
    )
    assert_type(app.placement("reports.daily"), tuple[str, int])

    # Negative cases: wrong argument types and counts are type errors.
    await add.kiq("a", 2)  # type: ignore[arg-type]
    await add.kiq(1)  # type: ignore[call-arg]
    await mul.kiq(1, 2, 3)  # type: ignore[call-arg]
    await with_ctx.kiq(1)  # type: ignore[arg-type]
    bad: str = await job.result()  # type: ignore[assignment]
    del bad


def sync_usage() -> None:
    """Sync callers (a Django view, a script): ``delay`` is checked like ``kiq``."""
    job = add.delay(1, 2)
    assert_type(job, aioq.SyncJob[int])
    assert_type(job.id, str)
    assert_type(job.get(timeout=10), int)
    assert_type(job.get(), int)
    assert_type(job.state(), aioq.JobState)
    assert_type(job.info(), aioq.JobInfo)
    assert_type(job.ready(), bool)
    assert_type(job.abort(), bool)
    assert_type(job.job, aioq.Job[int])
    assert_type(mul.delay(2, 3), aioq.SyncJob[int])
    assert_type(sync_with_ctx.delay(3), aioq.SyncJob[list[int]])
    later = add.apply_async(args=[1, 2], countdown=5.0, queue="q", priority=9)
    assert_type(later, aioq.SyncJob[int])
    assert_type(app.send_task("math.mul", args=[2, 3], countdown=1.0), aioq.SyncJob[Any])
    assert_type(app.job_sync("some-id"), aioq.SyncJob[Any])
    assert_type(add.s(1, 2).delay(), aioq.SyncJob[int])

    # Negative cases: delay takes the task's own parameters.
    add.delay("a", 2)  # type: ignore[arg-type]
    add.delay(1)  # type: ignore[call-arg]
    with_ctx.delay(1)  # type: ignore[arg-type]
    bad: str = add.delay(1, 2).get()  # type: ignore[assignment]
    del bad


@app.task
def sync_progress(ctx: aioq.Context, n: int) -> int:
    ctx.progress(1, total=n)  # a sync task just calls it
    return n


@app.task
async def async_progress(ctx: aioq.Context, n: int) -> int:
    await ctx.progress(1, total=n)
    return n


@app.on_worker_start
async def open_pool() -> dict[str, Any]:
    return {"pool": object()}


@app.middleware
async def timing(ctx: aioq.Context, call_next: Any) -> Any:
    assert_type(ctx.state["pool"], Any)
    assert_type(ctx.headers, dict[str, str])
    return await call_next()


@app.before_enqueue
def tag(call: aioq.Enqueue) -> None:
    call.headers["tenant"] = "acme"
    call.priority = "high"  # type: ignore[assignment]


def hooks_usage() -> None:
    # the decorators hand the function back with its own type
    started: Callable[[], Coroutine[Any, Any, dict[str, Any]]] = open_pool
    tagged: Callable[[aioq.Enqueue], None] = tag
    wrong: Callable[[int], None] = tag  # type: ignore[assignment]
    del started, tagged, wrong

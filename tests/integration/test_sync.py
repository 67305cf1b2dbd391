"""Sync callers: ``delay``/``apply_async``/``send_task``/``SyncJob`` from plain
threads, after a fork, and refused inside an event loop; progress from sync tasks.

The tests are plain functions (sync code, as a Django view is); the worker runs
in-process on an event loop of its own thread.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import aioq
import aioq.sync
from tests.conftest import WorkerRunner


class ThreadWorker:
    """An ``aioq.Worker`` running on an event loop in a background thread."""

    def __init__(self, app: aioq.App, **options: Any) -> None:
        options.setdefault("block", 0.1)
        options.setdefault("grace", 5.0)
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.worker: aioq.Worker | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(options,), daemon=True)
        self.thread.start()
        assert self.ready.wait(10), "worker did not start within 10 s"
        if self.error is not None:
            raise self.error

    def _run(self, options: dict[str, Any]) -> None:
        async def main() -> None:
            worker = self.worker = aioq.Worker(self.app, **options)
            task = asyncio.create_task(worker.run())
            try:
                ready = asyncio.create_task(worker.ready.wait())
                await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
                ready.cancel()
                self.ready.set()
                await task
            finally:
                await self.app.aclose()  # this loop's client, if the worker made one

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:
            self.error = exc
            self.ready.set()
        finally:
            self.loop.close()

    def stop(self) -> None:
        if self.worker is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(15)
        assert not self.thread.is_alive()


@pytest.fixture
def sync_app(redis_url: str, prefix: str) -> Iterator[aioq.App]:
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0)
    yield app
    aioq.sync.shutdown()


@pytest.fixture
def start_worker() -> Iterator[Any]:
    started: list[ThreadWorker] = []

    def start(app: aioq.App, **options: Any) -> ThreadWorker:
        worker = ThreadWorker(app, **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def _wait_child(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None (and the child killed) after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def _bridge_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aioq-sync"]


def test_many_threads_delay_and_get(sync_app: aioq.App, start_worker: Any) -> None:
    @sync_app.task
    async def add(x: int, y: int) -> int:
        return x + y

    start_worker(sync_app, concurrency=50)
    errors: list[BaseException] = []
    results: dict[tuple[int, int], int] = {}

    def client(t: int) -> None:
        try:
            for i in range(50):
                results[(t, i)] = add.delay(t, y=i).get(timeout=20)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors[:3]
    assert results == {(t, i): t + i for t in range(20) for i in range(50)}
    # one background loop, and on it one client of the app, for all 20 threads
    assert len(_bridge_threads()) == 1
    bridge = aioq.sync._bridge
    assert bridge is not None
    assert list(sync_app.broker._bounds) == [bridge.loop]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        aioq.sync.shutdown()
        gc.collect()
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
    assert _bridge_threads() == []
    assert sync_app.broker._bounds == {}


def test_apply_async_countdown_queue_and_priority(sync_app: aioq.App, start_worker: Any) -> None:
    @sync_app.task
    def mul(x: int, y: int) -> int:
        return x * y

    start_worker(sync_app, queues=["default", "other"])
    later = mul.apply_async(args=[3], kwargs={"y": 4}, countdown=1.0)
    assert later.state() is aioq.JobState.SCHEDULED
    assert not later.ready()
    assert later.get(timeout=10) == 12
    assert later.ready()
    elsewhere = mul.apply_async([5, 6], queue="other", priority=9, job_id="mul-5-6")
    assert elsewhere.id == "mul-5-6"
    assert elsewhere.get(timeout=10) == 30
    info = elsewhere.info()
    assert info.queue == "other" and info.result == 30


def test_send_task_and_job_sync(sync_app: aioq.App, start_worker: Any) -> None:
    @sync_app.task(name="math.add")
    async def add(x: int, y: int) -> int:
        return x + y

    start_worker(sync_app)
    job = sync_app.send_task("math.add", args=[1], kwargs={"y": 2})
    assert isinstance(job, aioq.SyncJob)
    assert job.get(timeout=10) == 3
    again = sync_app.job_sync(job.id)
    assert again == job and again.state() is aioq.JobState.SUCCEEDED
    with pytest.raises(aioq.TaskFailed):
        sync_app.send_task("math.add", args=["a", "b"]).get(timeout=10)
    assert add.s(4, 5).delay().get(timeout=10) == 9  # a signature, too


def test_state_ready_and_abort(sync_app: aioq.App) -> None:
    @sync_app.task(queue="nobody-reads-this")
    async def idle() -> None:
        return None

    job = idle.delay()
    assert job.state() is aioq.JobState.QUEUED and not job.ready()
    assert job.abort() is True
    assert job.state() is aioq.JobState.ABORTED and job.ready()
    assert job.abort() is False
    with pytest.raises(aioq.JobAborted):
        job.get(timeout=5)
    with pytest.raises(aioq.ResultTimeout):
        idle.delay().get(timeout=0.2)


def test_a_forked_child_gets_its_own_loop_and_client(sync_app: aioq.App, start_worker: Any) -> None:
    @sync_app.task
    async def add(x: int, y: int) -> int:
        return x + y

    start_worker(sync_app)
    assert add.delay(1, 1).get(timeout=10) == 2  # the parent's bridge exists now
    parent_loop = aioq.sync._bridge.loop if aioq.sync._bridge else None
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code, never return into pytest
        code = 1
        try:
            signal.alarm(20)  # a child that hangs ends (the handler raises, or it dies)
            value = add.delay(2, 3).get(timeout=10)
            bridge = aioq.sync._bridge
            fresh = bridge is not None and bridge.loop is not parent_loop
            code = 0 if value == 5 and fresh else 2
            aioq.sync.shutdown()
        finally:
            os._exit(code)
    status = _wait_child(pid, 30)
    assert status == 0
    assert add.delay(3, 4).get(timeout=10) == 7  # the parent's loop and client still work


def test_a_sync_call_inside_an_event_loop_is_refused(sync_app: aioq.App) -> None:
    @sync_app.task
    async def add(x: int, y: int) -> int:
        return x + y

    async def view() -> None:
        with pytest.raises(aioq.SyncCallInEventLoop, match=r"await add\.kiq"):
            add.delay(1, 2)
        with pytest.raises(aioq.SyncCallInEventLoop, match=r"kiq"):
            add.apply_async([1, 2])
        with pytest.raises(aioq.SyncCallInEventLoop, match=r"await app\.send"):
            sync_app.send_task("x")
        with pytest.raises(aioq.SyncCallInEventLoop, match=r"await job\.result"):
            sync_app.job_sync("some-id").get()
        await sync_app.aclose()

    asyncio.run(view())
    assert issubclass(aioq.SyncCallInEventLoop, aioq.ConfigurationError)
    assert aioq.sync._bridge is None  # nothing was started for the refused calls


async def test_progress_from_a_sync_task(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    def steps(ctx: aioq.Context, n: int) -> int:
        for i in range(1, n + 1):
            ctx.progress(i, total=n, stage=f"step {i}")
        return n

    await workers.start(app)
    job = await steps.kiq(3)
    assert await job.result(timeout=10) == 3
    info = await job.info()
    assert info.progress is not None
    assert (info.progress.current, info.progress.total) == (3, 3)
    assert info.progress.info == {"stage": "step 3"}


def test_the_loop_and_its_client_are_closed_at_exit(redis_url: str, prefix: str) -> None:
    # An atexit handler registered before aioq is imported runs after aioq's (LIFO).
    script = f"""
import atexit, sys, warnings
warnings.simplefilter("error")
def check():
    import aioq.sync
    clean = aioq.sync._bridge is None and app.broker._bounds == {{}}
    print("closed" if clean else "left open", flush=True)
atexit.register(check)
import aioq
app = aioq.App({redis_url!r}, prefix={prefix!r})
assert app.job_sync("nope").state() is aioq.JobState.QUEUED
"""
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "closed"
    assert "Warning" not in done.stderr and "unclosed" not in done.stderr, done.stderr


async def test_a_sync_task_can_delay_and_get(app: aioq.App, workers: WorkerRunner) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def fan_out(n: int) -> list[int]:  # runs in a worker thread: no event loop there
        return [add.delay(n, i).get(timeout=10) for i in range(3)]

    await workers.start(app)
    try:
        assert await (await fan_out.kiq(10)).result(timeout=20) == [10, 11, 12]
    finally:
        await asyncio.to_thread(aioq.sync.shutdown)


def test_workflows_from_sync_code_the_celery_way(sync_app: aioq.App, start_worker: Any) -> None:
    """`.delay()` on a chain, a group or a chord, and `chain(...)()` as Celery
    writes it, send the workflow from sync code and return sync handles."""

    @sync_app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @sync_app.task
    async def total(values: list[int]) -> int:
        return sum(values)

    start_worker(sync_app)
    assert aioq.chain(add.s(1, 2), add.s(3)).delay().get(timeout=10) == 6
    assert aioq.chain(add.s(1, 2), add.s(4))().get(timeout=10) == 7
    group = aioq.group(add.s(1, 1), add.s(2, 2)).delay()
    assert isinstance(group, aioq.SyncGroupJob)
    assert group.get(timeout=10) == [2, 4]
    assert group.ready()
    assert aioq.group(add.s(0, 1), add.s(0, 2))().get(timeout=10) == [1, 2]
    assert aioq.chord([add.s(1, 1), add.s(2, 2)], total.s()).delay().get(timeout=10) == 6

"""``max_result_bytes``: a result over the cap fails the job with ``ResultTooLarge``
(never retried, nothing stored); the app's cap is the default, a task's wins."""

from __future__ import annotations

import pytest
import redis

import aioq
from tests.conftest import WorkerRunner


async def test_results_over_the_cap_fail_the_job(
    redis_url: str, prefix: str, workers: WorkerRunner, sync_redis: redis.Redis
) -> None:
    app = aioq.App(redis_url, prefix=prefix, visibility_timeout=2.0, max_result_bytes=100)
    runs: list[int] = []

    @app.task(retries=3, retry_backoff=0.01)
    async def blob(n: int) -> str:
        runs.append(n)
        return "x" * n

    @app.task(max_result_bytes=10_000)
    async def big(n: int) -> str:
        return "y" * n

    @app.task(max_result_bytes=None)
    async def uncapped(n: int) -> str:
        return "z" * n

    await workers.start(app)
    assert await (await blob.kiq(50)).result(timeout=10) == "x" * 50
    job = await blob.kiq(200)
    with pytest.raises(aioq.TaskFailed) as err:
        await job.result(timeout=10)
    assert err.value.type == "ResultTooLarge"
    assert err.value.message == (
        f"the result of {blob.name} is 202 bytes, over max_result_bytes=100"
    )
    assert runs == [50, 200]  # failed at once: retries are for errors that may pass
    info = await job.info()
    assert info.state is aioq.JobState.FAILED
    # the record keeps the error, not the result
    assert not any(b"x" * 200 in v for v in sync_redis.hgetall(app.keys.job(job.id)).values())
    assert await (await big.kiq(5_000)).result(timeout=10) == "y" * 5_000  # the task's cap wins
    with pytest.raises(aioq.TaskFailed, match="over max_result_bytes=10000"):
        await (await big.kiq(20_000)).result(timeout=10)
    assert await (await uncapped.kiq(1_000)).result(timeout=10) == "z" * 1_000
    await app.aclose()


def test_the_cap_is_checked_where_it_is_written() -> None:
    with pytest.raises(aioq.ConfigurationError, match="max_result_bytes must be a whole number"):
        aioq.App("redis://127.0.0.1:1", max_result_bytes="1MB")  # type: ignore[arg-type]
    app = aioq.App("redis://127.0.0.1:1")
    with pytest.raises(aioq.ConfigurationError, match="max_result_bytes must be a positive"):
        app.task(max_result_bytes=0)

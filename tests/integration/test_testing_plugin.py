"""The pytest plugin (``aioq.testing.plugin``) used as a user would: a project of
their own, run by pytest in a subprocess; and ``drain()`` / ``Worker(burst=True)``."""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import aioq
from aioq.testing import running_worker

ROOT = Path(__file__).resolve().parents[2]

USER_TASKS = """
import os
import aioq

app = aioq.App(prefix=os.environ["USER_PREFIX"])  # the URL: $AIOQ_REDIS_URL
calls = []

@app.task(retries=2, retry_backoff=0.2)
async def flaky(x: int) -> int:
    calls.append(x)
    if len(calls) < 2:
        raise ValueError("first try fails")
    return x * 2
"""

USER_TEST = """
import tasks

async def test_flaky_is_retried(aioq_redis_url, aioq_worker):
    assert tasks.app.url == aioq_redis_url
    async with aioq_worker(tasks.app, concurrency=2) as w:
        job = await tasks.flaky.kiq(21)
        await w.drain()
        assert tasks.calls == [21, 21]
        assert await job.result(timeout=5) == 42

def test_url_is_exported(aioq_redis_url):
    assert aioq_redis_url.startswith("redis")
"""


def _plugin_args() -> list[str]:
    """``-p`` only when the installed package did not register the entry point
    (an install older than it); either way pytest loads it as a user's would."""
    registered = any(ep.value == "aioq.testing.plugin" for ep in entry_points(group="pytest11"))
    return [] if registered else ["-p", "aioq.testing.plugin"]


def _python_path(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's project and this checkout first, then what this run already had
    (where an installed aioq's entry point may live)."""
    before = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(pytester.path), str(ROOT), before]))


def _user_project(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(tasks=USER_TASKS, test_user=USER_TEST)
    pytester.makeini("[pytest]\nasyncio_mode = auto\n")


def test_user_project_uses_the_fixtures(
    pytester: pytest.Pytester, redis_url: str, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _user_project(pytester)
    monkeypatch.setenv("USER_PREFIX", prefix)
    _python_path(pytester, monkeypatch)
    result = pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_user_project_without_redis_is_skipped_with_the_fix(
    pytester: pytest.Pytester, prefix: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _user_project(pytester)
    monkeypatch.setenv("USER_PREFIX", prefix)
    _python_path(pytester, monkeypatch)
    monkeypatch.delenv("AIOQ_REDIS_URL", raising=False)
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))  # no redis-server to be found
    result = pytester.runpytest_subprocess(*_plugin_args(), "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(["*no Redis for aioq's tests*"])
    assert "export AIOQ_REDIS_URL=" in result.stdout.str()


async def test_drain_waits_for_a_delayed_retry_and_a_child_job(app: aioq.App) -> None:
    seen: list[str] = []

    @app.task
    async def child(tag: str) -> None:
        seen.append(tag)

    @app.task(retries=1, retry_backoff=0.3)
    async def parent() -> None:
        if "parent" not in seen:
            seen.append("parent")
            raise ValueError("retry me")
        await child.kiq("child")

    async with running_worker(app, concurrency=4) as w:
        await parent.kiq()
        await w.drain(timeout=20)
        assert seen == ["parent", "child"]
        assert not w.worker.running


async def test_burst_worker_stops_when_its_queues_are_empty(app: aioq.App) -> None:
    done: list[int] = []

    @app.task
    async def work(i: int) -> None:
        await asyncio.sleep(0.01)
        done.append(i)

    await work.kiq_many([(i,) for i in range(20)])
    await work.with_options(delay=0.5).kiq(99)
    worker = aioq.Worker(app, concurrency=5, block=0.1, burst=True)
    await asyncio.wait_for(worker.run(), 20)
    assert sorted(done) == [*range(20), 99]  # the delayed one counted as work left

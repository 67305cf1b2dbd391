"""``aioq worker`` started the Celery way, as real processes (issue 13): tasks in
a module only ``include`` names, ``-A``/``--loglevel``, a file path, and the
warnings (or ``--strict`` refusal) of a worker without tasks."""

from __future__ import annotations

import signal

import pytest

import aioq
from tests.integration.test_process import spawn  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow


async def test_celery_layout_runs_tasks_from_included_module(  # type: ignore[no-untyped-def]
    spawn,  # noqa: F811
    redis_url: str,
    prefix: str,
) -> None:
    proc = spawn("worker", "-A", "tests.celeryish.celery_app:celery", "--loglevel", "INFO")
    proc.wait_for_output("task(s) registered")
    assert "1 task(s) registered: celeryish.add" in proc.output()
    assert "no task is registered" not in proc.output()
    async with aioq.App(redis_url, prefix=prefix) as client:
        job = await client.send("celeryish.add", [2, 3])
        assert await job.result(timeout=10) == 5
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0


def test_file_path_without_app_names_the_apps_found(spawn) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    proc = spawn("worker", "./tests/celeryish/celery_app.py")
    assert proc.popen.wait(20) == 1
    out = proc.output()
    assert "Traceback" not in out
    assert (
        "aioq: error: module 'tests.celeryish.celery_app' has no attribute 'app'; "
        "aioq.App objects found: tests.celeryish.celery_app.celery"
    ) in out


def test_worker_without_tasks_warns_and_strict_refuses(spawn) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    refused = spawn("worker", "tests.celeryish.bare:app", "--strict")
    assert refused.popen.wait(20) == 1
    assert "aioq: error: no task is registered" in refused.output()
    assert "refusing to start (strict)" in refused.output()
    warned = spawn("worker", "tests.celeryish.bare:app")
    warned.wait_for_output("0 task(s) registered")
    assert "no task is registered: every job this worker reads will be dead-lettered" in (
        warned.output()
    )

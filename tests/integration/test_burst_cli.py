"""``aioq worker --burst`` as a real process: it runs what is queued, then exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import procapp

ROOT = Path(__file__).resolve().parents[2]


def _env(redis_url: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }


async def test_burst_worker_process_exits_0_when_done(redis_url: str, prefix: str) -> None:
    # Share the task definitions of procapp, but talk to this test's prefix.
    procapp.app.__init__(redis_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for definition in (procapp.add, procapp.sleepy, procapp.mul):
        procapp.app.registry.add(definition.definition)
    try:
        jobs = await procapp.add.kiq_many([(i, i) for i in range(50)])
        proc = subprocess.run(  # noqa: ASYNC221 (the test waits for the process on purpose)
            [sys.executable, "-m", "aioq", "worker", "tests.procapp:app", "--burst", "-c", "8"],
            env=_env(redis_url, prefix),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        assert "burst: queues empty" in proc.stderr
        assert [await job.result(timeout=5) for job in jobs] == [2 * i for i in range(50)]
    finally:
        await procapp.app.aclose()


def test_burst_refuses_several_processes(redis_url: str, prefix: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aioq", "worker", "tests.procapp:app", "--burst", "-w", "2"],
        env=_env(redis_url, prefix),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "--burst runs one process" in proc.stderr


pytestmark = pytest.mark.slow

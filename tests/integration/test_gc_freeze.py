"""``aioq worker`` freezes what start-up made and raises the young generation's
threshold (``Worker.tune_gc``, ``_worker/gcpolicy.py``); an embedded ``aioq.Worker``
leaves the program's garbage collector alone."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

import aioq
from aioq._worker import gcpolicy
from tests import procapp

ROOT = Path(__file__).resolve().parents[2]


def _use(redis_url: str, prefix: str) -> None:
    # procapp's task definitions, talking to this test's prefix (as test_burst_cli)
    procapp.app.__init__(redis_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    procapp.app.registry.add(procapp.frozen.definition)


async def test_worker_process_freezes_its_start_up_objects(redis_url: str, prefix: str) -> None:
    _use(redis_url, prefix)
    try:
        job = await procapp.frozen.kiq()
        proc = subprocess.run(  # noqa: ASYNC221 (the test waits for the process on purpose)
            [sys.executable, "-m", "aioq", "worker", "tests.procapp:app", "--burst"],
            env={
                **os.environ,
                "AIOQ_REDIS_URL": redis_url,
                "AIOQ_TEST_PREFIX": prefix,
                "PYTHONPATH": str(ROOT),
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 0, proc.stderr
        frozen, young = await job.result(timeout=5)
        assert frozen > 1000  # the app, its modules, the connections: thousands of objects
        assert young == gcpolicy.YOUNG
    finally:
        await procapp.app.aclose()


async def test_embedded_worker_leaves_the_gc_alone(redis_url: str, prefix: str) -> None:
    _use(redis_url, prefix)
    before = [gc.get_freeze_count(), gc.get_threshold()[0]]
    try:
        job = await procapp.frozen.kiq()
        await aioq.Worker(procapp.app, burst=True).run()
        assert await job.result(timeout=5) == before
        assert [gc.get_freeze_count(), gc.get_threshold()[0]] == before
    finally:
        await procapp.app.aclose()


pytestmark = pytest.mark.slow

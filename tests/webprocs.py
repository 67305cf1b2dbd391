"""A real ``aioq worker`` process for the web examples' tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

import aioq.sync

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def worker_process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT
) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m aioq worker ARGS…``, until it has registered its tasks; stopped
    (SIGTERM) at the end, then the sync bridge is shut down and the keys of the
    ``AIOQ_PREFIX`` in ``env`` are deleted."""
    path = os.pathsep.join(p for p in (str(cwd), str(ROOT), env.get("PYTHONPATH")) if p)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aioq", "worker", *args],
            cwd=cwd,
            env={**os.environ, **env, "PYTHONPATH": path},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 20
        while "task(s) registered" not in log.read_text():
            assert proc.poll() is None, f"the worker exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the worker did not start:\n{log.read_text()}"
            time.sleep(0.05)
        yield proc
    finally:
        proc.terminate()
        proc.wait(15)
        aioq.sync.shutdown()
        client = redis.Redis.from_url(env["AIOQ_REDIS_URL"])
        keys = list(client.scan_iter(match=f"{env['AIOQ_PREFIX']}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

"""``aioq worker APP --reload``: edit the app's module, see the new code run."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import aioq
from aioq._reload import without_reload

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("watchfiles", reason="the dev extra installs watchfiles")

MODULE = """
import os
import aioq

app = aioq.App(os.environ["AIOQ_REDIS_URL"], prefix=os.environ["AIOQ_TEST_PREFIX"])


@app.task(name="version")
async def version() -> str:
    return {answer!r}
"""


async def _answer(app: aioq.App) -> str:
    job = await app.send("version")
    result: str = await job.result(timeout=15)
    return result


async def test_the_worker_restarts_with_the_edited_code(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    source = tmp_path / "reloadapp.py"
    source.write_text(MODULE.format(answer="v1"))
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    command = [sys.executable, "-m", "aioq", "worker", "reloadapp:app", "--reload"]
    proc = subprocess.Popen(  # noqa: ASYNC220 (a long-lived process the test talks to)
        [*command, "--reload-dir", str(tmp_path), "--grace", "1", "-c", "4"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    app = aioq.App(redis_url, prefix=prefix)
    try:
        assert await _answer(app) == "v1"
        source.write_text(MODULE.format(answer="v2"))
        deadline = time.monotonic() + 30
        answers = []
        while time.monotonic() < deadline:
            answers.append(await _answer(app))
            if answers[-1] == "v2":
                break
            await asyncio.sleep(0.2)
        assert answers[-1] == "v2", answers
        assert set(answers) <= {"v1", "v2"}
    finally:
        await app.aclose()
        proc.send_signal(signal.SIGTERM)
        try:
            output, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            output, _ = proc.communicate()
    assert proc.returncode == 0, output
    assert "restarting the worker" in output
    # the first child stopped at the edit, the second at the end
    assert len(re.findall(r"worker \S+ stopped", output)) == 2, output


def test_the_child_command_line_drops_the_reload_options() -> None:
    argv = ["worker", "a:app", "--reload", "--reload-dir", "src", "-c", "4", "--reload-dir=x"]
    assert without_reload(argv) == ["worker", "a:app", "-c", "4"]


def test_reload_refuses_a_missing_directory(tmp_path: Path, redis_url: str, prefix: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aioq", "worker", "tests.procapp:app", "--reload"]
        + ["--reload-dir", str(tmp_path / "nope")],
        env={**os.environ, "AIOQ_REDIS_URL": redis_url, "AIOQ_TEST_PREFIX": prefix},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "is not a directory" in proc.stderr


pytestmark = pytest.mark.slow

"""The ``aioq worker`` command as real processes: start-up, SIGTERM, SIGKILL, ``-w``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis

import aioq
from tests import procapp
from tests.conftest import on_cluster_too

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = open(log, "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "aioq", *args],
            env=env,
            cwd=ROOT,
            stdout=self._out,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.popen.poll() is not None:
                raise AssertionError(
                    f"process exited with {self.popen.returncode}:\n{self.output()}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed in {timeout}s:\n{self.output()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(10)
        self._out.close()


@pytest.fixture
def spawn(broker_url: str, prefix: str, tmp_path: Path) -> Iterator:  # type: ignore[type-arg]
    procs: list[Proc] = []
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": broker_url,
        "AIOQ_TEST_PREFIX": prefix,
        "AIOQ_TEST_VT": "2.0",
        "PYTHONPATH": str(ROOT),
    }

    def start(*args: str, extra_env: dict[str, str] | None = None) -> Proc:
        proc = Proc(list(args), {**env, **(extra_env or {})}, tmp_path / f"proc{len(procs)}.log")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        proc.stop()


@pytest.fixture
async def client(broker_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    # Share the task definitions of procapp, but talk to this test's prefix.
    procapp.app.__init__(broker_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for definition in (procapp.add, procapp.sleepy, procapp.mul):
        procapp.app.registry.add(definition.definition)
    yield procapp.app
    await procapp.app.aclose()


def children_of(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


async def test_worker_command_runs_tasks_and_logs_startup(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]
    proc = spawn("worker", "tests.procapp:app", "-c", "10", "--log-level", "info")
    proc.wait_for_output("task(s) registered")
    out = proc.output()
    assert "consuming queue 'default'" in out and "consuming queue 'math'" in out
    assert "math.mul" in out and "tests.procapp.add" in out
    assert await (await procapp.add.kiq(2, 2)).result(timeout=10) == 4
    assert await (await procapp.mul.kiq(3, 3)).result(timeout=10) == 9
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0


async def test_queue_selection_with_Q(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]
    proc = spawn("worker", "tests.procapp:app", "-Q", "math")
    proc.wait_for_output("task(s) registered")
    assert "consuming queue 'default'" not in proc.output()
    assert await (await procapp.mul.kiq(3, 4)).result(timeout=10) == 12
    with pytest.raises(aioq.ResultTimeout):
        await (await procapp.add.kiq(1, 1)).result(timeout=0.5)


async def test_sigterm_drains_in_flight_tasks(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, sync_redis: redis.Redis
) -> None:
    proc = spawn("worker", "tests.procapp:app", "-c", "4", "--grace", "10")
    proc.wait_for_output("task(s) registered")
    jobs = await procapp.sleepy.kiq_many([(1.0,)] * 4)
    while not all([await j.state() == aioq.JobState.RUNNING for j in jobs]):
        await asyncio.sleep(0.02)
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0
    assert all([await j.state() == aioq.JobState.SUCCEEDED for j in jobs])
    assert "finishing 4 in-flight task(s)" in proc.output()
    runs = procapp.runs_per_job(sync_redis, client.prefix)
    assert runs == {j.id: 1 for j in jobs}


@on_cluster_too
async def test_sigkilled_workers_tasks_finish_elsewhere(  # type: ignore[no-untyped-def]
    spawn, client: aioq.App, broker_redis: redis.Redis
) -> None:
    doomed = spawn("worker", "tests.procapp:app", "-c", "10")
    doomed.wait_for_output("task(s) registered")
    jobs = await procapp.sleepy.kiq_many([(1.0,)] * 10)
    # Wait until every body has counted itself: RUNNING is written by start.lua
    # before the body runs, so a kill right after it can land before the count.
    while len(procapp.runs_per_job(broker_redis, client.prefix)) < 10:
        await asyncio.sleep(0.02)
    before = procapp.runs_per_job(broker_redis, client.prefix)
    doomed.popen.kill()
    doomed.popen.wait(5)
    assert before == {j.id: 1 for j in jobs}, (before, doomed.output())
    killed_at = time.monotonic()
    rescuer = spawn("worker", "tests.procapp:app", "-c", "10")
    await asyncio.to_thread(rescuer.wait_for_output, "task(s) registered")
    ready_at = time.monotonic()
    results = await asyncio.gather(*(j.result(timeout=30) for j in jobs))
    # Taken over once the lease ran out and the rescuer was up: then a recovery
    # pass, the 1 s task and a round trip (with a second of slack for a slow host).
    elapsed = time.monotonic() - max(killed_at + client.visibility_timeout, ready_at)
    assert len(set(results)) == 1  # all finished by the rescuer
    assert elapsed < 1.0 + 1.0 + 2.0
    runs = procapp.runs_per_job(broker_redis, client.prefix)
    assert set(runs) == {j.id for j in jobs}
    executions = sorted(runs.values())
    log = rescuer.output()
    if "without renewal" in log or "lost the lease" in log:
        # The rescuer itself stood still past its 2 s lease (a starved host): the
        # guarantee allows a re-run then, and the worker says so.
        assert executions[0] == 2 and executions[-1] <= 3, log
    else:
        ran = log.count("succeeded in")
        assert executions == [2] * 10, (ran, log)  # killed once, rerun once
    assert all([(await j.info()).attempts == 2 for j in jobs])
    rescuer.popen.send_signal(signal.SIGTERM)
    assert rescuer.popen.wait(15) == 0


async def two_children(spawn) -> tuple[Proc, set[int]]:  # type: ignore[no-untyped-def]
    """``aioq worker -w 2`` once both children are up: the supervisor and their pids."""
    sup = spawn("worker", "tests.procapp:app", "-w", "2", "-c", "5")
    deadline = time.monotonic() + 15
    while sup.output().count("task(s) registered") < 2:
        assert time.monotonic() < deadline, sup.output()
        await asyncio.sleep(0.05)
    kids = children_of(sup.popen.pid)
    assert len(kids) == 2
    return sup, kids


async def test_supervisor_restarts_a_dead_process(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]
    sup, kids = await two_children(spawn)
    victim = min(kids)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while True:
        now = children_of(sup.popen.pid)
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline, sup.output()
        await asyncio.sleep(0.1)
    assert "restarting it" in sup.output()
    jobs = await procapp.add.kiq_many([(i, i) for i in range(50)])
    assert await asyncio.gather(*(j.result(timeout=15) for j in jobs)) == [2 * i for i in range(50)]
    sup.popen.send_signal(signal.SIGTERM)
    assert sup.popen.wait(20) == 0
    assert not children_of(sup.popen.pid)


async def test_children_stop_when_their_supervisor_is_killed(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]
    # A SIGKILLed supervisor cannot forward anything: its children notice they were
    # orphaned and stop as on SIGTERM (drain, exit 0) instead of running on unseen.
    sup, kids = await two_children(spawn)
    slow = await procapp.sleepy.kiq(1.0)  # in flight when the supervisor dies
    await asyncio.sleep(0.3)
    sup.popen.kill()
    sup.popen.wait(10)
    deadline = time.monotonic() + 15
    alive = set(kids)
    while alive:
        assert time.monotonic() < deadline, f"orphaned children still running: {alive}"
        alive = {pid for pid in alive if not _gone(pid)}
        await asyncio.sleep(0.1)
    assert await slow.result(timeout=5) is not None  # drained, not cut off
    assert "supervisor" in sup.output() and "stopping" in sup.output()


def _gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_starting_stops_the_worker_cleanly(spawn, signum: int) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM (say, from Kubernetes) or Ctrl-C while the worker still waits for
    Redis, before it has taken anything: it exits 0 at once with one line, not
    killed by the signal (exit -15) or with a KeyboardInterrupt traceback."""
    proc = spawn(
        "worker",
        "tests.procapp:app",
        "--connect-timeout",
        "60",
        "--log-level",
        "info",
        extra_env={"AIOQ_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    proc.wait_for_output("retrying in")
    proc.popen.send_signal(signum)
    assert proc.popen.wait(10) == 0
    out = proc.output()
    assert "Traceback" not in out
    assert f"received {signal.Signals(signum).name} while starting" in out


def test_unreachable_redis_fails_clearly(spawn) -> None:  # type: ignore[no-untyped-def]
    start = time.monotonic()
    proc = spawn(
        "worker",
        "tests.procapp:app",
        "--connect-timeout",
        "1",
        extra_env={"AIOQ_REDIS_URL": "redis://127.0.0.1:1/0"},
    )
    assert proc.popen.wait(20) == 1
    assert time.monotonic() - start < 15
    out = proc.output()
    assert "Traceback" not in out
    assert (
        out.strip()
        .splitlines()[-1]
        .startswith("aioq: error: cannot reach Redis at redis://127.0.0.1:1/0")
    )
    assert "retrying in" in out


def test_bad_app_path_fails_clearly(spawn) -> None:  # type: ignore[no-untyped-def]
    proc = spawn("worker", "no_such_module:app")
    assert proc.popen.wait(20) == 1
    assert "Traceback" not in proc.output()
    assert "aioq: error: cannot import 'no_such_module'" in proc.output()


@pytest.fixture
def password_redis(tmp_path: Path) -> Iterator[str]:
    """A second private Redis that requires a password."""
    import shutil

    from tests.conftest import _load_with_redis

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("needs a redis-server binary")
    port = _load_with_redis().free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
            "--requirepass",
            "s3cret",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=port, password="s3cret").ping()
                break
            except redis.ConnectionError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(10)


def test_refused_credentials_fail_clearly(spawn, password_redis: str) -> None:  # type: ignore[no-untyped-def]
    wrong = password_redis.replace("redis://", "redis://:wrong@")
    proc = spawn(
        "worker", "tests.procapp:app", "--connect-timeout", "1", extra_env={"AIOQ_REDIS_URL": wrong}
    )
    assert proc.popen.wait(20) == 1
    out = proc.output()
    assert "Traceback" not in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("aioq: error: Redis at redis://***@127.0.0.1:")
    assert "refused the credentials" in last and "wrong" not in out


async def test_client_with_refused_credentials_raises(password_redis: str) -> None:
    app = aioq.App(password_redis)  # no password at all

    @app.task
    async def t() -> None: ...

    with pytest.raises(aioq.BrokerUnavailable, match="credentials"):
        await t.kiq()
    await app.aclose()


def test_a_hung_redis_makes_kiq_fail_after_its_timeout(password_redis: str) -> None:
    """A Redis that accepts connections but never answers (SIGSTOPped): kiq() raises
    BrokerUnavailable after operation_timeout instead of hanging."""
    port = int(password_redis.rsplit(":", 1)[1].split("/")[0])
    pid = int(
        subprocess.run(
            ["pgrep", "-f", f"redis-server.*:{port}"], capture_output=True, text=True
        ).stdout.split()[0]
    )
    url = password_redis.replace("redis://", "redis://:s3cret@")

    async def scenario() -> float:
        app = aioq.App(url, operation_timeout=0.5)

        @app.task
        async def t() -> None: ...

        await app.ping()  # connected while Redis still answers
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        try:
            with pytest.raises(aioq.BrokerUnavailable, match="did not answer within 0.5s"):
                await t.kiq()
            return time.monotonic() - started
        finally:
            os.kill(pid, signal.SIGCONT)
            await app.aclose()

    assert asyncio.run(scenario()) < 3

"""Prometheus ``/metrics`` of a real worker and of ``aioq exporter``, scraped over
HTTP (issue 12, "Metrics, health"). Needs the ``aioq[metrics]`` extra (in ``dev``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import pytest

import aioq
from tests.conftest import WorkerRunner
from tests.integration import test_process
from tests.integration.probes import free_port, get, wait_status
from tests.integration.test_process import client, spawn  # noqa: F401  (fixtures)

pytestmark = pytest.mark.timeout(60)


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition: (name, labels) → value."""
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def child_env() -> dict[str, str]:
    """Worker processes see this worktree first, then whatever the tests see
    (where prometheus-client may be installed)."""
    path = os.pathsep.join(p for p in (str(test_process.ROOT), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path}


async def test_worker_metrics_count_outcomes_durations_slots_and_queues(
    app: aioq.App, workers: WorkerRunner
) -> None:
    pytest.importorskip("prometheus_client")
    tries: dict[str, int] = {}

    @app.task
    async def ok(x: int) -> int:
        return x

    @app.task(retries=1, retry_on=(ValueError,))
    async def flaky(key: str) -> str:
        tries[key] = tries.get(key, 0) + 1
        if tries[key] == 1:
            raise ValueError("first try fails")
        return key

    @app.task
    async def broken() -> None:
        raise RuntimeError("always")

    port = free_port()
    await workers.start(app, metrics_port=port, concurrency=8)
    jobs = [await ok.kiq(i) for i in range(3)]
    jobs.append(await flaky.kiq("a"))
    failing = await broken.kiq()
    for job in jobs:
        await job.result(timeout=10)
    with pytest.raises(aioq.TaskFailed):
        await failing.result(timeout=10)
    later = await ok.with_options(delay=60).kiq(9)  # noqa: F841  (a scheduled message)

    status, body = await get(port, "/metrics")
    assert status == 200
    m = parse(body)
    q, ok_name = app.default_queue, ok.name
    assert sample(m, "aioq_jobs_total", queue=q, task=ok_name, outcome="succeeded") == 3
    assert sample(m, "aioq_jobs_total", queue=q, task=flaky.name, outcome="retried") == 1
    assert sample(m, "aioq_jobs_total", queue=q, task=flaky.name, outcome="succeeded") == 1
    assert sample(m, "aioq_jobs_total", queue=q, task=broken.name, outcome="failed") == 1
    assert sample(m, "aioq_job_duration_seconds_count", queue=q, task=ok_name) == 3
    assert sample(m, "aioq_job_duration_seconds_bucket", queue=q, task=ok_name, le="+Inf") == 3
    assert sample(m, "aioq_job_duration_seconds_sum", queue=q, task=ok_name) >= 0
    assert sample(m, "aioq_worker_slots", state="busy") == 0
    assert sample(m, "aioq_worker_slots", state="free") == 8
    assert sample(m, "aioq_queue_scheduled", queue=q) == 1
    assert sample(m, "aioq_queue_ready", queue=q) == 0
    assert ("aioq_queue_oldest_ready_age_seconds", frozenset({("queue", q)})) in m


async def test_aborted_and_dead_lettered_jobs_are_counted(
    app: aioq.App, workers: WorkerRunner
) -> None:
    pytest.importorskip("prometheus_client")
    started = asyncio.Event()

    @app.task
    async def forever() -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task
    async def typed(x: int) -> int:
        return x

    port = free_port()
    await workers.start(app, metrics_port=port)
    job = await forever.kiq()
    await asyncio.wait_for(started.wait(), 10)
    await job.abort()
    bad = await app.send(typed.name, args=("not a number",))
    with pytest.raises(aioq.TaskFailed):
        await bad.result(timeout=10)
    q = app.default_queue
    for _ in range(50):
        m = parse((await get(port, "/metrics"))[1])
        if sample(m, "aioq_jobs_total", queue=q, task=forever.name, outcome="aborted"):
            break
        await asyncio.sleep(0.1)
    assert sample(m, "aioq_jobs_total", queue=q, task=forever.name, outcome="aborted") == 1
    assert sample(m, "aioq_jobs_total", queue=q, task=typed.name, outcome="dead_lettered") == 1
    assert sample(m, "aioq_queue_dead", queue=q) == 1


@pytest.mark.slow
async def test_exporter_serves_queue_gauges_without_a_worker(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pytest.importorskip("prometheus_client")
    from tests import procapp

    for i in range(3):
        await procapp.add.kiq(i, i)
    port = free_port()
    proc = spawn("exporter", "tests.procapp:app", "--port", str(port), extra_env=child_env())
    body = await wait_status(port, "/metrics", 200, within=40)
    m = parse(body)
    assert sample(m, "aioq_queue_ready", queue="default") == 3
    assert sample(m, "aioq_queue_oldest_ready_age_seconds", queue="default") >= 0
    assert not any(name.startswith("aioq_jobs") for name, _ in m)  # no worker counters
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0


def test_metrics_port_without_the_extra_exits_1_naming_it() -> None:
    code = (
        "import sys; sys.modules['prometheus_client'] = None; from aioq.cli import main; "
        "sys.exit(main(['worker', 'tests.procapp:app', '--metrics-port', '9']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=test_process.ROOT,
        env={**os.environ, **child_env()},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "aioq[metrics]" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
async def test_one_endpoint_covers_every_process_of_w2(spawn, client: aioq.App) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    pytest.importorskip("prometheus_client")
    from tests import procapp

    port = free_port()
    proc = spawn(
        "worker", "tests.procapp:app", "-w", "2", "-c", "3", "--metrics-port", str(port),
        extra_env=child_env(),
    )  # fmt: skip
    jobs = [await procapp.add.kiq(i, 1) for i in range(20)]
    for job in jobs:
        await job.result(timeout=15)
    name = procapp.add.name
    m: Samples = {}
    for _ in range(200):  # both children answer once they have started
        try:
            status, body = await get(port, "/metrics")
        except OSError:  # the supervisor's endpoint not up yet (refused, or reset)
            await asyncio.sleep(0.1)
            continue
        m = parse(body)
        if status == 200 and sample(m, "aioq_worker_slots", state="free") == 6:
            break
        await asyncio.sleep(0.1)
    assert sample(m, "aioq_worker_slots", state="free") == 6, proc.output()  # 2 x 3 slots
    assert sample(m, "aioq_jobs_total", queue="default", task=name, outcome="succeeded") == 20
    assert sample(m, "aioq_job_duration_seconds_count", queue="default", task=name) == 20
    assert sample(m, "aioq_queue_ready", queue="default") == 0  # taken once, not summed
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.popen.wait(15) == 0

"""Fault injection with real worker processes and real Redis servers.

Every test prints its figures (tasks, kills, executions, duplicates, lost) and
checks them against explicit bounds. Executions are counted in a separate
oracle Redis that no fault touches. ``make chaos`` runs the full sizes
(``AIOQ_CHAOS=full``); ``make test`` runs a bounded version.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

import aioq
from aioq._core.message import Message, encode
from tests.chaos import chaosapp
from tests.chaos.conftest import VT, Chaos, wait_started
from tests.chaos.harness import scale

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(600)]


async def test_sigkill_storm(chaos: Chaos) -> None:
    """T1: random SIGKILLs while restarting workers: nothing lost, duplicates bounded."""
    n = scale(1500, 5000)
    chaos.fleet.concurrency = 4  # so the work outlasts the storm
    for _ in range(3):
        chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(chaos.rng.randint(10, 50),) for _ in range(n)])
    ids = [j.id for j in jobs]
    end = time.monotonic() + scale(8, 20)
    while time.monotonic() < end:
        await asyncio.sleep(scale(1, 2))
        chaos.fleet.kill_one(chaos.rng)
        chaos.fleet.spawn()
    done_during_storm = sum(1 for s in chaos.states(ids) if s == b"succeeded")
    states = await chaos.wait_final(ids, timeout=120)
    figures = chaos.report(f"sigkill storm ({done_during_storm} done when it ended)", ids, states)
    assert figures["lost"] == 0
    assert figures["executions"] >= n
    assert figures["duplicates"] <= figures["kills"] * chaos.fleet.concurrency
    assert chaos.leftovers() == (0, 0)


async def test_sigterm_drains_without_duplicates(chaos: Chaos) -> None:
    """T2: SIGTERM during load: in-flight tasks finish, the rest go to the other worker."""
    n = scale(600, 2000)
    leaving, staying = chaos.fleet.spawn(), chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(chaos.rng.randint(50, 100),) for _ in range(n)])
    ids = [j.id for j in jobs]
    # Signalled once it reads (a slow machine may still be importing otherwise):
    # the test is about the drain of a working worker.
    await asyncio.to_thread(chaos.fleet.wait_logged, leaving, "task(s) registered")
    await wait_started(chaos, 40)
    leaving.send_signal(signal.SIGTERM)
    assert leaving.wait(30) == 0
    states = await chaos.wait_final(ids, timeout=120)
    figures = chaos.report("sigterm drain", ids, states)
    assert figures["lost"] == 0 and figures["duplicates"] == 0
    assert staying.poll() is None
    assert chaos.leftovers() == (0, 0)


@pytest.mark.parametrize("servers", [True], indirect=True, ids=["aof-always"])
async def test_redis_restart_with_aof_loses_nothing(chaos: Chaos) -> None:
    """T3: Redis killed and restarted (appendfsync always) mid-run: zero lost."""
    n = scale(800, 3000)
    for _ in range(2):
        chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(chaos.rng.randint(10, 50),) for _ in range(n)])
    ids = [j.id for j in jobs]
    await wait_started(chaos, 50)
    chaos.broker.kill()
    await asyncio.sleep(1.5)
    chaos.broker.start()
    states = await chaos.wait_final(ids, timeout=120)
    figures = chaos.report("redis restart (aof always)", ids, states)
    assert figures["lost"] == 0
    assert all(p.poll() is None for p in chaos.fleet.procs), "a worker died"
    assert chaos.leftovers() == (0, 0)


async def test_redis_restart_without_persistence(chaos: Chaos) -> None:
    """T3b: without persistence a restart loses what Redis held — queued messages and
    finished records — while tasks running at that moment still finish and record
    their outcome, and the workers carry on with new work (docs/reliability.md)."""
    chaos.fleet.concurrency = 8
    chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(400,) for _ in range(scale(80, 200))])
    ids = [j.id for j in jobs]
    await wait_started(chaos, 8)
    running = set(chaos.counts("executions")) - set(chaos.counts("finishes"))
    chaos.broker.kill()
    chaos.broker.start()  # empty
    await asyncio.sleep(1.0)
    states = dict(zip(ids, chaos.states(ids), strict=True))
    for job_id in running:
        deadline = time.monotonic() + 10
        while states[job_id] != b"succeeded" and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            states[job_id] = chaos.states([job_id])[0]
    lost = [j for j in ids if states[j] is None]
    print(
        f"\n[chaos] redis restart (no persistence): tasks={len(ids)} running={len(running)} "
        f"lost={len(lost)}"
    )
    assert all(states[j] == b"succeeded" for j in running)  # in flight: finished
    assert set(lost) <= set(ids) - running  # only what sat in Redis was lost
    after = await chaosapp.work.kiq(5)  # the worker recreated its group
    assert await after.result(timeout=20) == 5


async def test_killed_connections(chaos: Chaos) -> None:
    """T4: CLIENT KILL TYPE normal, repeatedly: zero lost, workers still running."""
    n = scale(2000, 10000)
    chaos.fleet.concurrency = 4  # so the work outlasts the connection kills
    for _ in range(2):
        chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(chaos.rng.randint(5, 20),) for _ in range(n)])
    ids = [j.id for j in jobs]
    admin = chaos.broker.client()
    kills = 0
    end = time.monotonic() + scale(5, 15)
    while time.monotonic() < end:
        await asyncio.sleep(0.5)
        kills += admin.client_kill_filter(_type="normal", skipme=True)
    admin.close()
    states = await chaos.wait_final(ids, timeout=120)
    figures = chaos.report(f"client kill x{kills} connections", ids, states)
    assert figures["lost"] == 0
    assert all(p.poll() is None for p in chaos.fleet.procs), "a worker died"


async def test_long_task_on_a_live_worker_runs_once(chaos: Chaos) -> None:
    """T5: a task three times longer than the visibility timeout is never taken over."""
    for _ in range(2):
        chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(int(VT * 3000),) for _ in range(4)])
    ids = [j.id for j in jobs]
    states = await chaos.wait_final(ids, timeout=60)
    figures = chaos.report("long tasks", ids, states)
    assert figures["lost"] == 0 and figures["duplicates"] == 0


async def test_poison_messages(chaos: Chaos) -> None:
    """T6: garbage, unknown task, wrong types, oversized: each dead-lettered with its
    reason (jobs with a record fail at once); the good ones around them succeed."""
    chaos.fleet.spawn("--unknown-task-grace", "0")  # no rolling deploy here
    client = chaos.broker.client()
    stream = chaos.app.keys.stream("default")
    good = await chaosapp.work.kiq_many([(5,)] * 20)
    client.xadd(stream, {"m": b"\x00garbage"})
    unknown = await chaos.app.send("no.such.task")
    wrong = await chaos.app.send(chaosapp.work.name, args=["not an int"])
    client.xadd(
        stream,
        {"m": encode(Message("big", chaosapp.work.name, "default", ["x" * (2 << 20)], {}, 0))},
    )
    good += await chaosapp.work.kiq_many([(5,)] * 20)
    for job, kind in ((unknown, "UnknownTask"), (wrong, "ArgumentError")):
        with pytest.raises(aioq.TaskFailed) as err:
            await job.result(timeout=20)
        assert err.value.type == kind
    assert await asyncio.gather(*(j.result(timeout=20) for j in good)) == [5] * 40
    reasons = sorted(
        f[b"reason"].decode().split(":")[0]
        for _, f in client.xrange(chaos.app.keys.dead("default"))
    )
    client.close()
    print(f"\n[chaos] poison: dead letters={reasons}")
    assert reasons == [
        "invalid arguments",
        "message too large",
        "undecodable message",
        "unknown task 'no.such.task'",
    ]


async def test_retries_under_kills(chaos: Chaos) -> None:
    """T7: tasks that fail twice then succeed, while workers are killed."""
    n = scale(60, 200)
    for _ in range(3):
        chaos.fleet.spawn()
    jobs = await chaosapp.flaky.kiq_many([(2,)] * n)
    ids = [j.id for j in jobs]
    for _ in range(scale(3, 8)):
        await asyncio.sleep(1.0)
        chaos.fleet.kill_one(chaos.rng)
        chaos.fleet.spawn()
    states = await chaos.wait_final(ids, timeout=120)
    successes = chaos.counts("successes")
    attempts = [(await chaos.app.job(j).info()).attempts for j in ids]
    print(
        f"\n[chaos] retries under kills: tasks={n} kills={chaos.fleet.kills} "
        f"successes={sum(successes.values())} min attempts={min(attempts)}"
    )
    assert all(s == b"succeeded" for s in states)
    assert all(successes.get(j, 0) >= 1 for j in ids)
    extra = sum(successes.get(j, 0) - 1 for j in ids)
    assert extra <= chaos.fleet.kills * chaos.fleet.concurrency
    assert min(attempts) >= 3


async def test_zombie_worker(chaos: Chaos) -> None:
    """T8: SIGSTOP a worker past its lease, SIGCONT it: its tasks finish elsewhere,
    its late completions never overwrite a record or ack another worker's message,
    and it stays alive and keeps working."""
    chaos.fleet.concurrency = 5
    zombie = chaos.fleet.spawn()
    jobs = await chaosapp.work.kiq_many([(1500,)] * 5)
    ids = [j.id for j in jobs]
    await wait_started(chaos, 5)
    zombie.send_signal(signal.SIGSTOP)  # resumed after its tasks' time is up: they end
    # at once and their completions race the heartbeat's discovery of the takeover
    rescuer = chaos.fleet.spawn()
    deadline = time.monotonic() + 30
    while min(chaos.counts("executions").get(j, 0) for j in ids) < 2:
        assert time.monotonic() < deadline, chaos.fleet.logs()[-3000:]
        await asyncio.sleep(0.1)
    zombie.send_signal(signal.SIGCONT)
    states = await chaos.wait_final(ids, timeout=30)
    workers = {(await chaos.app.job(j).info()).worker for j in ids}
    print(f"\n[chaos] zombie: finished by {workers}; zombie pid {zombie.pid}")
    assert all(s == b"succeeded" for s in states)
    assert all(w is not None and f":{zombie.pid}:" not in w for w in workers)
    assert f":{rescuer.pid}:" in next(iter(workers))
    await asyncio.sleep(0.5)
    assert chaos.leftovers() == (0, 0)
    logs = chaos.fleet.logs()
    assert "taken over by another worker" in logs
    # The stalled worker dropped what it no longer owned and carries on working.
    await asyncio.sleep(1.0)
    assert zombie.poll() is None, "the zombie worker died:\n" + logs[-3000:]
    rescuer.send_signal(signal.SIGTERM)
    assert rescuer.wait(30) == 0
    later = await chaosapp.work.kiq_many([(50,)] * 10)
    later_ids = [j.id for j in later]
    assert await chaos.wait_final(later_ids, timeout=30) == [b"succeeded"] * 10
    later_workers = {(await chaos.app.job(j).info()).worker for j in later_ids}
    assert all(w is not None and f":{zombie.pid}:" in w for w in later_workers)
    assert zombie.poll() is None


@pytest.mark.parametrize("servers", [True], indirect=True, ids=["aof-always"])
async def test_client_awaits_through_a_redis_restart(chaos: Chaos) -> None:
    """T9: job.result() rides out a Redis restart instead of failing."""
    chaos.fleet.spawn()
    job = await chaosapp.work.kiq(2000)
    await wait_started(chaos, 1)
    waiting = asyncio.ensure_future(job.result(timeout=30))
    await asyncio.sleep(0.2)
    chaos.broker.kill()
    await asyncio.sleep(1.0)
    assert not waiting.done()
    chaos.broker.start()
    assert await waiting == 2000
    print("\n[chaos] result awaited through a Redis restart")


async def test_workflows_under_kills(chaos: Chaos) -> None:
    """T10: chains and chords while workers are SIGKILLed: every workflow ends with
    the right value, and each chord callback runs once unless its own run was killed."""
    chaos.fleet.concurrency = 4
    for _ in range(3):
        chaos.fleet.spawn()
    n = scale(40, 150)
    chains = [
        await aioq.chain(chaosapp.step.s(i), chaosapp.step.s(), chaosapp.step.s()).kiq()
        for i in range(n)
    ]
    chords = [
        await aioq.chord([chaosapp.step.s(i + k) for k in range(5)], chaosapp.total.s()).kiq()
        for i in range(n)
    ]
    for _ in range(scale(4, 10)):
        await asyncio.sleep(1.0)
        chaos.fleet.kill_one(chaos.rng)
        chaos.fleet.spawn()
    ids = [j.id for j in chains + chords]
    states = await chaos.wait_final(ids, timeout=120)
    values = [await j.result(timeout=5) for j in chains + chords]
    callbacks = chaos.counts("callbacks")
    extra = sum(callbacks.get(j.id, 0) - 1 for j in chords)
    print(
        f"\n[chaos] workflows under kills: chains={n} chords={n} kills={chaos.fleet.kills} "
        f"callback runs={sum(callbacks.values())} (extra {extra})"
    )
    assert all(s == b"succeeded" for s in states)
    assert values == [i + 3 for i in range(n)] + [
        sum(i + k + 1 for k in range(5)) for i in range(n)
    ]
    assert all(callbacks.get(j.id, 0) >= 1 for j in chords)
    assert extra <= chaos.fleet.kills * chaos.fleet.concurrency


async def test_limits_and_unique_jobs_under_kills(chaos: Chaos) -> None:
    """T11: a rate-limited, max_running task and unique jobs while workers are
    SIGKILLed: every job ends, no job id runs twice unless its run was killed,
    and no second of recorded starts holds more than the rate (kills included)."""
    chaos.fleet.concurrency = 8
    # Sent before any worker runs: a unique job that already ended would rightly
    # let the next equal call make a new job.
    unique = chaosapp.work.with_options(unique_for=60.0)
    dupes = await asyncio.gather(*(unique.kiq(10 + i % 20) for i in range(200)))
    unique_ids = sorted({j.id for j in dupes})
    assert len(unique_ids) == 20  # 200 sends of 20 distinct calls: 20 jobs
    for _ in range(3):
        chaos.fleet.spawn()
    n = scale(150, 400)
    jobs = await chaosapp.limited.kiq_many([(chaos.rng.randint(5, 40),) for _ in range(n)])
    for _ in range(scale(3, 8)):
        await asyncio.sleep(1.0)
        chaos.fleet.kill_one(chaos.rng)
        chaos.fleet.spawn()
    ids = [j.id for j in jobs] + unique_ids
    states = await chaos.wait_final(ids, timeout=180)
    figures = chaos.report("limits and unique jobs under kills", ids, states)
    client = chaos.oracle.client()
    try:
        starts = sorted(float(s) for s in client.lrange("starts", 0, -1))
    finally:
        client.close()
    worst = max(sum(1 for t in starts[i:] if t < s + 1.0) for i, s in enumerate(starts))
    print(f"[chaos] busiest second of limited starts: {worst} (limit 50)")
    assert figures["lost"] == 0
    assert figures["duplicates"] <= chaos.fleet.kills * chaos.fleet.concurrency
    assert worst <= 50

"""Every script call the transport can make has all its KEYS in one Redis Cluster slot.

No Redis needed: every operation of ``_transport`` (the worker's ``Streams`` in both
record modes, the producer's ``Client``, dead letters, schedules, the heartbeat's
``LeaseRenewer``) runs against a recording stand-in for redis-py that answers each
script with a reply of the right shape. Each EVALSHA it sees (and each multi-key
command) is checked with Redis Cluster's own slot function (CRC16 of the key, or of
its ``{hash tag}``), for a spread of prefixes, queue names, task names, job ids and
priority levels.

Two kinds of calls are exempt, each named below with the reason:

- scripts that start with ``#!lua flags=no-cluster`` (``complete.lua``,
  ``start_many.lua``): single-node batch scripts that take job keys as ARGV. Redis
  Cluster refuses them outright; the transport sends them only with
  ``batch_records=True``, which an app on a cluster must never set (the test checks
  that ``batch_records=False`` never sends one);
- ``SINGLE_NODE_CROSS_SLOT``: reads that span a worker's queues in one command on
  a single Redis server. A transport set up for a cluster (``cluster=True``) makes
  them per slot group instead (``_transport/reads.py``): no call it makes may
  cross slots. Each entry must really be cross-slot in single-node mode, so the
  list cannot outlive a change of the reads.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import aioq._transport as transport_pkg
from aioq._core.event import Note
from aioq._core.options import When
from aioq._transport import deadletters, events, inspect, schedules
from aioq._transport.client import Client, NewJob
from aioq._transport.keys import LEVELS, Keyspace
from aioq._transport.leases import LeaseRenewer
from aioq._transport.scripts import SCRIPTS
from aioq._transport.streams import Streams
from aioq._transport.types import Admit, Completion, Entry, Finish, Start
from tests.unit.test_keys import slot

LUA = Path(transport_pkg.__file__).parent / "lua"

NO_CLUSTER = frozenset(
    p.stem for p in LUA.glob("*.lua") if p.read_text().startswith("#!lua flags=no-cluster")
)

SINGLE_NODE_CROSS_SLOT = {
    # fetch.lua reads the level streams of *all* the worker's queues in one script,
    # so that the most urgent level of any queue is taken first; on a cluster, one
    # call per queue slot, merged by level on the worker.
    "fetch": "one script over the level streams of every queue of a worker",
    # The idle wait blocks on every level stream of every queue at once (XREAD /
    # XREADGROUP BLOCK over many keys); on a cluster, one XREAD per slot group.
    # App.events() reads every queue's event stream in one XREAD too.
    "XREAD": "the idle wait watches every queue's level streams in one command (and "
    "App.events() reads every queue's event stream in one XREAD)",
    "XREADGROUP": "the idle blocking read spans every queue's level streams",
    "EXISTS": "stream discovery asks about many queues' streams at once",
    # The recovery scan of a worker on many queues reads the pending summaries of
    # all its level streams in one script; on a cluster, one call per slot group.
    "pending": "one script over the pending summaries of every queue's level streams",
    # A worker's start makes the groups of all its queues (and learns which level
    # streams exist) in one script per chunk of queues; on a cluster, per slot group.
    "groups": "one script makes the consumer groups of many queues at start",
}

PREFIXES = ["aioq", "my:app"]
QUEUES = ["default", "emails", "q:with:colons"]
TASKS = ["app.tasks.send_email", "x", "rate}limited"]
JOB_IDS = ["9f1c2ad4e0b34c5fa1d2e3f405162738", "report@1700000000000", "a"]


class Call(NamedTuple):
    name: str
    """Script name (file stem), or the command for a non-script call."""
    keys: tuple[str, ...]
    cluster_mode: bool
    """Made by a transport set up for a cluster (``batch_records=False``)."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_BY_SHA = {SCRIPTS[p.stem].sha: p.stem for p in LUA.glob("*.lua")}


def _reply(name: str, keys: list[str], args: list[Any]) -> Any:
    """A reply of the shape the transport expects from script ``name``."""
    n = len(keys)
    replies: dict[str, Any] = {
        "fetch": [n, *[v for i in range(n) for v in (i + 1, b"")]],
        "claim": [*([b"0-0"] * n), 0, 0],
        "reclaim": [],
        "forget_consumers": [],
        "pending": [],
        "groups": [],
        "renew": [[], []],
        "pump": [0, -1, -1],
        "due": [1_700_000_000_000, -1, b"default"],
        "rehint": 1,
        "join": None,
        "slots": [],
        "admit": [0],
        "start_many": [1] * ((len(args) - 2) // 4),
        "complete": [1, 1] * ((len(args) - 2) // 13),
        "finish": [1, b""],
        "ack": [1] * ((len(args) - 2) // 2),
        "tick": [1, 0],
        "event": 1,
        "pause": 1,
        "enqueue_unique": [1, args[0] if args else b""],
        "abort": [1, b"task", b"queue", b"", b"1000"],
        "redrive": 0,
        "purge": [],
    }
    return replies.get(name, 1)


MULTI_KEY = {"EXISTS", "DEL", "UNLINK", "TOUCH"}
"""Plain commands whose every argument is a key."""

_CANNED: dict[str, Any] = {
    "time": (1_700_000_000, 0),
    "hmget": [None, None, None, None, None],
    "hgetall": {},
    "xrange": [],
    "xrevrange": [(b"1-0", {b"m": b""})],
}
"""Replies to plain commands whose reply the transport reads (others get 1)."""


class Recorder:
    def __init__(self, cluster_mode: bool) -> None:
        self.cluster_mode = cluster_mode
        self.calls: list[Call] = []

    def script(self, sha: str, numkeys: int, rest: tuple[Any, ...]) -> Any:
        name = _BY_SHA[sha]
        keys = [_text(k) for k in rest[:numkeys]]
        self.calls.append(Call(name, tuple(keys), self.cluster_mode))
        return _reply(name, keys, list(rest[numkeys:]))

    def command(self, name: str, args: tuple[Any, ...]) -> Any:
        if name.upper() == "EVALSHA":
            return self.script(args[0], int(args[1]), args[2:])
        if name.upper() == "XREADGROUP":  # raw (lanes.py): the keys follow STREAMS
            rest = args[[_text(a).upper() for a in args].index("STREAMS") + 1 :]
            self.streams("XREADGROUP", dict.fromkeys(rest[: len(rest) // 2]))
            return None
        if name.upper() in MULTI_KEY:
            self.calls.append(Call(name.upper(), tuple(map(_text, args)), self.cluster_mode))
        elif args and isinstance(args[0], (str, bytes)):
            self.calls.append(Call(name.upper(), (_text(args[0]),), self.cluster_mode))
        return _CANNED.get(name.lower(), 1)

    def streams(self, name: str, streams: dict[Any, Any]) -> None:
        self.calls.append(Call(name, tuple(_text(k) for k in streams), self.cluster_mode))


class FakePipeline:
    """Records what a (sync or async) pipeline was given; ``execute`` replies."""

    def __init__(self, rec: Recorder, is_async: bool) -> None:
        self._rec = rec
        self._async = is_async
        self._replies: list[Any] = []

    def evalsha(self, sha: str, numkeys: int, *rest: Any) -> FakePipeline:
        self._replies.append(self._rec.script(sha, numkeys, rest))
        return self

    def execute_command(self, *command: Any) -> FakePipeline:
        self._replies.append(self._rec.command(command[0], command[1:]))
        return self

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> FakePipeline:
            self._replies.append(self._rec.command(name, args))
            return self

        return record

    def execute(self, raise_on_error: bool = True) -> Any:
        replies, self._replies = self._replies, []
        if not self._async:
            return replies

        async def done() -> list[Any]:
            return replies

        return done()


class FakeConnection:
    """A pooled connection as ``lanes.Lanes`` uses it: records what is sent."""

    def __init__(self, rec: Recorder) -> None:
        self._rec = rec
        self._replies: list[Any] = []
        self._parser = self  # Lanes reads replies from the connection's parser
        self.health_check_interval = 0

    def pack_commands(self, commands: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        return list(commands)

    async def send_packed_command(
        self, commands: list[tuple[Any, ...]], check_health: bool = True
    ) -> None:
        for name, *args in commands:
            if name == "EVALSHA":
                self._replies.append(self._rec.script(args[0], args[1], tuple(args[2:])))
            else:
                self._replies.append(self._rec.command(name, tuple(args)))

    async def read_response(self) -> Any:
        return self._replies.pop(0)


class FakePool:
    def __init__(self, rec: Recorder) -> None:
        self._rec = rec

    async def get_connection(self) -> FakeConnection:
        return FakeConnection(self._rec)


class FakeRedis:
    """Stands in for ``redis.asyncio.Redis`` (or, ``is_async=False``, ``redis.Redis``)."""

    def __init__(self, rec: Recorder, is_async: bool = True) -> None:
        self._rec = rec
        self._async = is_async
        self.connection_pool = FakePool(rec)

    def pipeline(self, transaction: bool = True) -> FakePipeline:
        return FakePipeline(self._rec, self._async)

    async def evalsha(self, sha: str, numkeys: int, *rest: Any) -> Any:
        return self._rec.script(sha, numkeys, rest)

    async def execute_command(self, *command: Any) -> Any:
        return self._rec.command(command[0], command[1:])

    async def xread(self, streams: dict[Any, Any], **_: Any) -> list[Any]:
        self._rec.streams("XREAD", streams)
        return []

    async def xreadgroup(self, group: str, consumer: str, streams: Any, **_: Any) -> list[Any]:
        self._rec.streams("XREADGROUP", streams)
        return []

    async def scan_iter(self, **_: Any) -> Any:
        for _ in ():
            yield b""

    def __getattr__(self, name: str) -> Any:
        if not self._async:
            return lambda *args, **kwargs: self._rec.command(name, args)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return self._rec.command(name, args)

        return call


async def _worker_calls(redis: Any, keys: Keyspace, cluster_mode: bool) -> None:
    """Every operation of the worker's ``Streams`` (the runtime's only way to Redis)."""
    streams = Streams(
        redis, keys, batch_records=not cluster_mode, events_maxlen=100, cluster=cluster_mode
    )
    worker = "host-1-abcdef"
    level_of = {
        keys.stream(q, level): (q, level) for q in QUEUES for level in reversed(range(LEVELS))
    }
    for queue in QUEUES:
        await streams.ensure_group(queue)
    await streams.ensure_groups(QUEUES)
    # the reader: fetch across all the worker's queues, then the idle waits
    await streams.fetch(worker, QUEUES, 10, False)
    await streams.fetch(worker, QUEUES[:1], 10, True)
    if streams.one_read(list(level_of)):  # on a cluster the worker waits with XREAD then
        await streams.read_blocking(worker, level_of, 1, 100)
    one_queue = {k: v for k, v in level_of.items() if v[0] == QUEUES[0]}
    assert streams.one_read(list(one_queue))
    await streams.read_blocking(worker, one_queue, 1, 100)
    await streams.wait(dict.fromkeys(level_of, b"0-0"), 100)
    await streams.fetch_streams(worker, level_of, 10, False)
    await streams.peek(dict.fromkeys(level_of, b"0-0"), 100)
    await streams.existing(list(level_of))
    await streams.pending_summaries(list(level_of))

    entries = [
        Entry(keys.stream(q, level), q, level, b"1-0", b"payload", 2)
        for q in QUEUES
        for level in (0, 5, 9)
    ]
    unique_lock = (keys.unique(QUEUES[0], "task:digest"), 0)
    finishes = [
        Finish(job, 1, "succeeded", b"o", 1, 1000, unique_lock if i == 0 else None)
        for i, job in enumerate(JOB_IDS)
    ]
    await streams.admit(
        [Admit(task, job, 1000, False, 2, 5000) for task in TASKS for job in JOB_IDS]
    )
    await streams.running_slots([(task, job, 2) for task in TASKS for job in JOB_IDS], 5000)
    await streams.running_slots([(task, job, 2) for task in TASKS for job in JOB_IDS], None)
    await streams.start(worker, 1, [Start(job, TASKS[0], QUEUES[0], 1) for job in JOB_IDS])
    for entry in entries:
        await streams.dead_letter(entry, worker, "reason", 1000, 1)
        await streams.retry(entry, worker, b"payload", 100)
        await streams.renew(entry.stream, worker, [entry.id])
        await streams.reclaim(entry.queue, entry.level, worker, [entry.id], 100)
        await streams.release(entry.stream, worker, [entry.id], 100)
    note = Note("succeeded", JOB_IDS[0], TASKS[0], 1, "detail")
    items = [
        Completion(e, finishes[i % 3] if i % 4 else None, note if i % 2 else None)
        for i, e in enumerate(entries)
    ]
    await streams.complete(worker, items)
    await streams.ack(worker, entries)
    await streams.ack(worker, entries, [(e.queue, note) for e in entries])
    for entry in entries:
        await streams.dead_letter(entry, worker, "reason", 1000, 1, note)
        await streams.retry(entry, worker, b"payload", 100, note)
        for job in JOB_IDS:
            await streams.progress(job, worker, 1, b"50%", (entry, note))
    for finish in finishes:
        await streams.write_outcome(worker, finish)
    await streams.forget_consumers_of([keys.level_streams(q) for q in QUEUES], worker)
    await streams.due_queues(100, 0)
    await streams.pump_hinted(QUEUES, 1000, 100)
    await streams.with_delayed(QUEUES)
    await streams.hint_due(QUEUES[0], 1000)
    for queue in QUEUES:
        await streams.pump(queue, 100)
        await streams.claim(queue, worker, 100, [b"0-0"] * LEVELS, 10)
        await streams.forget_consumers(keys.level_streams(queue), 100, keep=worker)
        await streams.forget_consumers(keys.level_streams(queue), 0, only="gone-worker")
        for job in JOB_IDS:
            await streams.enqueue_once(queue, 3, job, b"payload", 1000)
            await streams.unlock(keys.unique(queue, job), job, 0)
    for job in JOB_IDS:
        await streams.mark_retrying(job, worker, 1, b"err", 100, 1000)
        await streams.progress(job, worker, 1, b"50%")
        await streams.join(job, 0, b"v", 2, 1000)
        await streams.end_group(job, 1000)
    await streams.states(JOB_IDS)


async def _producer_calls(redis: Any, keys: Keyspace) -> None:
    """Every operation of the producer's ``Client``, dead letters and schedules."""
    from aioq._transport.batcher import Batcher

    class Bound:
        def __init__(self) -> None:
            self.batcher = Batcher(redis)
            self.replies = None  # no reply channel: records as a fire-and-forget sender's
            self.cluster = True

        async def load_scripts(self) -> None:
            pass

    client = Client("redis://127.0.0.1:1", keys, {}, 1.0)
    bound = Bound()
    client._get = lambda: bound  # type: ignore[assignment,return-value,method-assign]
    jobs = [
        NewJob(job, task, queue, level, b"payload", 1, 1000, lock)
        for job, task, queue, level, lock in zip(
            JOB_IDS, TASKS, QUEUES, (0, 4, 9), ("task:digest", None, "a"), strict=True
        )
    ]
    for job in jobs:
        await client.enqueue(job)
        await client.enqueue_delayed(job, When(delay_ms=100))
        await client.enqueue_delayed(job, When(eta_ms=100))
        if job.lock is not None:
            await client.enqueue_unique(job, None, 1000)
            await client.enqueue_unique(job, When(delay_ms=10), 1000)
            await client.unlock(job.queue, job.lock, job.job_id, 0)
        await client.abort(job.job_id, b"outcome", 1, 1000)
        note = Note("aborted", job.job_id, job.task, 1)
        await events.write(redis, keys, 100, job.queue, note, "w")
        await client.expire_record(job.job_id, 1000)
        await client.report_progress(job.job_id, b"50%")
        await client.job_state(job.job_id)
        await client.job_record(job.job_id)
    await client.enqueue_many([*jobs, jobs[0]._replace(payload=None)])

    for queue in QUEUES:
        await deadletters.dead_queues(redis, keys)
        await deadletters.read(redis, keys, queue, 10)
        await deadletters.redrive(redis, keys, queue, [b"1-0", b"2-0"])
        await deadletters.purge(redis, keys, queue)
        await inspect.purge_ready(redis, keys, queue)
        for level in (0, 9):
            await schedules.fire(redis, keys, queue, level, "nightly", 1, "j@1", b"p", 1000)
        await schedules.pause(redis, keys, queue, "nightly", resume=False)
        await schedules.pause(redis, keys, queue, "nightly", resume=True)
    await schedules.definitions(redis, keys)
    await schedules.put(redis, keys, "nightly", b"definition")
    await schedules.forget(redis, keys, "nightly")
    await events.read(redis, keys, dict.fromkeys(QUEUES, "0-0"), 10, None, redis.cluster_mode)
    await deadletters.requeue_jobs(redis, keys, [(j, TASKS[0], QUEUES[0]) for j in JOB_IDS], 10)
    for job in JOB_IDS:
        await schedules.record(redis, keys, job, TASKS[0], QUEUES[0], 1000)
    await schedules.states(redis, keys, [(q, "nightly") for q in QUEUES])


def _heartbeat_calls(rec: Recorder, keys: Keyspace) -> None:
    renewer = LeaseRenewer("redis://127.0.0.1:1", {}, "host-1-abcdef", 1.0)
    renewer._redis = FakeRedis(rec, is_async=False)  # type: ignore[assignment]
    renewer.renew({keys.stream(q, level): [b"1-0"] for q in QUEUES for level in (0, 9)})
    renewer.renew({})


def _record_everything(cluster_mode: bool) -> list[Call]:
    rec = Recorder(cluster_mode)
    redis = FakeRedis(rec)
    for prefix in PREFIXES:
        keys = Keyspace(prefix)
        asyncio.run(_worker_calls(redis, keys, cluster_mode))
        if cluster_mode:  # the producer side has one mode
            asyncio.run(_producer_calls(redis, keys))
            _heartbeat_calls(rec, keys)
    return rec.calls


@pytest.fixture(scope="module")
def calls() -> list[Call]:
    return _record_everything(True) + _record_everything(False)


def _cross_slot(calls: list[Call], cluster_mode: bool) -> dict[str, list[tuple[str, ...]]]:
    found: dict[str, list[tuple[str, ...]]] = {}
    for call in calls:
        if call.cluster_mode != cluster_mode:
            continue
        if call.name not in NO_CLUSTER and len({slot(k) for k in call.keys}) > 1:
            found.setdefault(call.name, []).append(call.keys)
    return found


def test_no_cluster_scripts_are_the_single_node_batches() -> None:
    assert NO_CLUSTER == {"complete", "start_many"}


def test_every_script_is_exercised(calls: list[Call]) -> None:
    """A new script (or a new caller shape) must be added to the calls above."""
    assert {p.stem for p in LUA.glob("*.lua")} <= {c.name for c in calls}


def test_every_call_keys_hash_to_one_slot(calls: list[Call]) -> None:
    """In cluster mode, no exception at all; on a single node, the listed reads."""
    crossing = {name: keys[0] for name, keys in _cross_slot(calls, True).items()}
    crossing |= {
        name: keys[0]
        for name, keys in _cross_slot(calls, False).items()
        if name not in SINGLE_NODE_CROSS_SLOT
    }
    assert crossing == {}, "calls whose keys span several cluster slots: " + "; ".join(
        f"{name} {list(keys)} -> slots {sorted({slot(k) for k in keys})}"
        for name, keys in crossing.items()
    )


def test_single_node_cross_slot_calls_are_still_cross_slot(calls: list[Call]) -> None:
    """Drop an entry from SINGLE_NODE_CROSS_SLOT once its call no longer crosses."""
    assert set(SINGLE_NODE_CROSS_SLOT) <= set(_cross_slot(calls, False))


def test_no_cluster_scripts_never_run_in_cluster_mode(calls: list[Call]) -> None:
    in_cluster = sorted({c.name for c in calls if c.cluster_mode and c.name in NO_CLUSTER})
    assert in_cluster == []
    # and they take no KEYS: Redis would route them by slot otherwise
    assert all(c.keys == () for c in calls if c.name in NO_CLUSTER)
    assert {c.name for c in calls if not c.cluster_mode} >= NO_CLUSTER


def test_task_level_keys_share_a_slot() -> None:
    for prefix, task in itertools.product(PREFIXES, TASKS):
        keys = Keyspace(prefix)
        assert slot(keys.rate(task)) == slot(keys.running(task)), (prefix, task)

"""Partitioned queues, the pure part (``_core/partitions.py``) and what an ``App``
and the read model make of it: naming, picking, expanding, summing, slots."""

from __future__ import annotations

import collections
from typing import Any

import pytest

import aioq
from aioq._core.partitions import Partitions, partition_index
from aioq._core.schedule import Schedule
from aioq._core.status import LevelStatus, QueueStatus, summed
from aioq._opscli import render_status
from aioq._transport.keys import Keyspace
from aioq._worker.scheduler import placement
from tests.unit.test_keys import slot


def test_a_partitioned_queue_names_its_partitions_and_plain_queues_stay_themselves() -> None:
    parts = Partitions()
    parts.declare("hot", 4)
    parts.declare("plain", 1)
    assert parts.names("hot") == ["hot#0", "hot#1", "hot#2", "hot#3"]
    assert parts.names("plain") == ["plain"]
    assert parts.names("unknown") == ["unknown"]
    assert parts.expand(["default", "hot", "hot#2", "default"]) == [
        "default",
        "hot#0",
        "hot#1",
        "hot#2",
        "hot#3",
    ]
    assert [parts.logical(n) for n in ("hot#3", "hot#4", "hot", "x#1", "hot#x")] == [
        "hot",
        "hot#4",  # not one of its 4 partitions: a queue of its own
        "hot",
        "x#1",
        "hot#x",
    ]
    assert parts.declared() == {"hot": 4, "plain": 1}
    assert parts.count("hot") == 4 and parts.count("unknown") == 1


def test_picking_round_robin_without_a_key_and_stable_by_key() -> None:
    parts = Partitions()
    parts.declare("hot", 3)
    assert [parts.pick("hot") for _ in range(7)] == [
        "hot#0",
        "hot#1",
        "hot#2",
        "hot#0",
        "hot#1",
        "hot#2",
        "hot#0",
    ]
    # by key: the same partition every time, in every process (CRC32, not hash())
    assert {parts.pick("hot", "user:42") for _ in range(5)} == {
        f"hot#{partition_index('user:42', 3)}"
    }
    assert partition_index("user:42", 3) == 1  # fixed: zlib.crc32(b"user:42") % 3
    assert parts.pick("hot", 7) == parts.pick("hot", "7")
    spread = collections.Counter(parts.pick("hot", f"k{i}") for i in range(3000))
    assert set(spread) == {"hot#0", "hot#1", "hot#2"} and min(spread.values()) > 900
    # not partitioned, or a partition named directly: as it is
    assert parts.pick("plain", "k") == "plain" and parts.pick("hot#2") == "hot#2"


@pytest.mark.parametrize(
    ("name", "count", "why"),
    [
        ("hot#1", 2, "reserved for partitions"),
        ("", 2, "non-empty"),
        ("{hot}", 2, "braces"),
        ("hot", 0, "from 1 to 1024"),
        ("hot", 1025, "from 1 to 1024"),
        ("hot", True, "from 1 to 1024"),
        ("hot", 2.0, "from 1 to 1024"),
    ],
)
def test_bad_declarations_are_refused_naming_the_problem(name: str, count: Any, why: str) -> None:
    with pytest.raises(aioq.ConfigurationError, match=why):
        Partitions().declare(name, count)


def test_a_queue_keeps_its_count() -> None:
    app = aioq.App("redis://127.0.0.1:1/0")
    app.queue("hot", partitions=4)
    app.queue("hot", partitions=4)  # the same again: fine
    with pytest.raises(aioq.ConfigurationError, match="already declared with 4"):
        app.queue("hot", partitions=8)
    assert app.queues() == ["default", "hot"]  # logical names: workers expand them


@pytest.mark.parametrize("key", [1.5, b"x", True, ["a"]])
def test_a_partition_key_is_a_str_or_an_int(key: Any) -> None:
    app = aioq.App("redis://127.0.0.1:1/0")

    @app.task
    async def work() -> None: ...

    with pytest.raises(aioq.ConfigurationError, match="partition_key must be a str or an int"):
        work.with_options(partition_key=key)


def test_every_key_of_a_partition_shares_its_slot_and_partitions_spread_over_slots() -> None:
    keys = Keyspace("aioq")
    parts = Partitions()
    parts.declare("hot", 8)
    slots = set()
    for name in parts.names("hot"):
        own = {slot(k) for k in (*keys.queue_keys(name), keys.unique(name, "k"))}
        own |= {slot(keys.schedule(name, "s")), slot(keys.once(name, "job"))}
        assert len(own) == 1, name
        slots |= own
    assert len(slots) == 8  # eight hash tags, eight slots: a cluster can spread them


def test_a_schedule_on_a_partitioned_queue_always_uses_the_partition_of_its_name() -> None:
    app = aioq.App("redis://127.0.0.1:1/0")
    app.queue("hot", partitions=4)

    @app.task(queue="hot", priority=3)
    async def tick() -> None: ...

    schedule = Schedule(name="every-minute", task=tick.name, cron="* * * * *")
    picked = {placement(app, schedule) for _ in range(6)}
    index = partition_index("schedule:every-minute", 4)
    assert picked == {(f"hot#{index}", 3)}


def _row(name: str, **counts: Any) -> QueueStatus:
    return QueueStatus(name=name, **counts)


def test_the_logical_row_sums_its_partitions_level_by_level() -> None:
    parts = [
        _row("hot#0", ready=2, scheduled=1, dead=1, consumers=2, oldest_ready_age_s=3.0),
        _row(
            "hot#1",
            ready=5,
            running=1,
            retrying=1,
            consumers=1,
            delivered=7,
            oldest_ready_age_s=9.0,
            levels=[
                LevelStatus(priority=0, ready=1, oldest_ready_age_s=9.0),
                LevelStatus(priority=5, ready=4, running=1, retrying=1, oldest_ready_age_s=2.0),
            ],
        ),
        _row("hot#2"),
    ]
    total = summed("hot", parts)
    assert (total.ready, total.scheduled, total.running, total.retrying, total.dead) == (
        7,
        1,
        1,
        1,
        1,
    )
    assert total.consumers == 2 and total.delivered == 7 and total.oldest_ready_age_s == 9.0
    assert total.partitions == parts
    assert total.levels == [
        LevelStatus(priority=0, ready=3, scheduled=1, oldest_ready_age_s=9.0),
        LevelStatus(priority=5, ready=4, running=1, retrying=1, oldest_ready_age_s=2.0),
    ]
    # only priority 0 anywhere: no level rows, as for a plain queue
    assert summed("hot", [parts[0], parts[2]]).levels == []
    assert summed("hot", [_row("hot#0"), _row("hot#1")]).oldest_ready_age_s is None


def test_aioq_status_prints_the_sum_then_each_partition() -> None:
    from datetime import UTC, datetime

    parts = [_row("hot#0", ready=2, consumers=1), _row("hot#1", ready=3, dead=1, consumers=1)]
    text = render_status(
        aioq.Status(queues=[summed("hot", parts)], workers=[], at=datetime.now(UTC))
    )
    lines = [line.split() for line in text.splitlines()[1:3]]
    lines.append(text.splitlines()[3].split())
    assert lines == [
        ["hot", "5", "0", "0", "0", "1", "-", "1"],
        ["hot#0", "2", "0", "0", "0", "0", "-", "1"],
        ["hot#1", "3", "0", "0", "0", "1", "-", "1"],
    ]


async def test_inline_mode_runs_calls_to_a_partitioned_queue() -> None:
    app = aioq.App("redis://127.0.0.1:1/0")
    app.queue("hot", partitions=2)

    @app.task(queue="hot")
    async def where(ctx: aioq.Context) -> str:
        return ctx.queue

    with app.inline():
        jobs = [await where.kiq() for _ in range(3)]
        keyed = await where.with_options(partition_key="k").kiq()
        assert [await j.result() for j in jobs] == ["hot#0", "hot#1", "hot#0"]
        assert await keyed.result() == f"hot#{partition_index('k', 2)}"

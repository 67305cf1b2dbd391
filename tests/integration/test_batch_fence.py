"""The stream fence of a batch: one XPENDING range per stream and batch
(fence.lua: ack_plan / ack_entry) must judge every entry as the per-entry check
did — an entry another consumer took over, or one redelivered since, is neither
acked nor deleted, while the rest of the batch is."""

from __future__ import annotations

import pytest

import aioq
from aioq._transport.connection import connect
from aioq._transport.streams import Streams
from aioq._transport.types import Completion, Entry, Finish, Start


@pytest.mark.parametrize("batch_records", [True, False], ids=["complete.lua", "ack.lua"])
async def test_a_batch_acks_only_the_entries_its_deliveries_hold(
    app: aioq.App, batch_records: bool
) -> None:
    r = connect(app.url)
    try:
        streams = Streams(r, app.keys, batch_records=batch_records)
        await streams.ensure_group("default")
        stream = app.keys.stream("default")
        for i in range(6):
            await r.xadd(stream, {"m": str(i).encode()})
        reply = await r.xreadgroup("workers", "w1", {stream: ">"}, count=6)
        ids = [eid for eid, _ in reply[0][1]]
        # entry 1: taken over by w2; entry 3: redelivered to w1 (deliveries 2)
        await r.xclaim(stream, "workers", "w2", 0, [ids[1]])
        await r.xclaim(stream, "workers", "w1", 0, [ids[3]])
        jobs = [f"j{i}" for i in range(6)]
        assert await streams.start("w1", 1, [Start(j, "t", "default", 1) for j in jobs]) == [1] * 6
        # completion order is not stream order
        order = [4, 1, 0, 5, 3, 2]
        done = await streams.complete(
            "w1",
            [
                Completion(
                    Entry(stream, "default", 0, ids[i], b"", 1),
                    Finish(jobs[i], 1, "succeeded", b"o", 2, 60_000),
                )
                for i in order
            ],
        )
        acked = {
            i: d.acked for i, d in zip(order, done, strict=True) if not isinstance(d, Exception)
        }
        assert acked == {0: True, 1: False, 2: True, 3: False, 4: True, 5: True}
        left = [eid for eid, _ in await r.xrange(stream)]
        assert left == [ids[1], ids[3]]
        pending = await r.xpending_range(stream, "workers", "-", "+", 10)
        assert [(p["message_id"], p["consumer"]) for p in pending] == [
            (ids[1], b"w2"),
            (ids[3], b"w1"),
        ]
    finally:
        await r.aclose()

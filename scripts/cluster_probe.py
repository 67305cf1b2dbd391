#!/usr/bin/env python3
"""Diagnostic (not part of aioq): what breaks when today's transport is handed a
``RedisCluster`` instead of a single-node client. Delete once the cluster broker exists.

    python scripts/with_cluster.py -- python scripts/cluster_probe.py [--patch] [--batch]
        [--queues default,other]

It swaps ``connect()`` for ``RedisCluster.from_url`` and runs kiq → worker → result.
``--patch`` adds the three smallest stand-ins that make one queue work (scripts
loaded with one SCRIPT LOAD per script, queued in pipelines as raw EVALSHA, result
waiters subscribed on one node); ``--batch`` keeps ``batch_records=True`` (the
single-node ``start_many``/``complete`` scripts); ``--queues`` makes the worker read
several queues (``fetch.lua`` across slots). Each step prints OK or FAIL.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

from redis.asyncio import Redis, RedisCluster

import aioq
import aioq._transport.client as client_mod
import aioq._transport.connection as connection_mod
import aioq._transport.results as results_mod
import aioq._transport.scripts as scripts_mod
import aioq._transport.streams as streams_mod
import aioq._worker.worker as worker_mod


def install(url: str, *, patch: bool, batch: bool) -> None:
    def cluster_connect(_url: str, **_options: Any) -> Any:
        return RedisCluster.from_url(url)

    for mod in (connection_mod, client_mod, worker_mod):
        mod.connect = cluster_connect  # type: ignore[attr-defined]

    streams_init = streams_mod.Streams.__init__

    def init(self: Any, redis: Any, keys: Any, *, batch_records: bool = True) -> None:
        streams_init(self, redis, keys, batch_records=batch)

    streams_mod.Streams.__init__ = init  # type: ignore[method-assign]
    if not patch:
        return

    async def load_all(self: Any, redis: Any) -> None:
        for script in self._by_name.values():
            await redis.script_load(script.source)  # RedisCluster: on every primary

    def queue(self: Any, pipe: Any, name: str, keys: list[str], args: list[Any]) -> None:
        pipe.execute_command("EVALSHA", self._by_name[name].sha, len(keys), *keys, *args)

    scripts_mod.Scripts.load_all = load_all  # type: ignore[method-assign]
    scripts_mod.Scripts.queue = queue  # type: ignore[method-assign]

    subs_init = results_mod.Subscriptions.__init__

    def subscriptions(self: Any, redis: Any, timeout: float) -> None:
        if isinstance(redis, RedisCluster):
            redis = Redis.from_url(url)  # one node: classic pub/sub is cluster-wide
        subs_init(self, redis, timeout)

    results_mod.Subscriptions.__init__ = subscriptions  # type: ignore[method-assign,assignment]


async def step(name: str, work: Any) -> Any:
    try:
        value = await asyncio.wait_for(work, 8)
    except Exception as exc:  # a probe reports every failure and goes on
        cause: BaseException = exc
        while isinstance(cause, BaseExceptionGroup):
            cause = cause.exceptions[0]
        print(f"FAIL {name}: {type(cause).__name__}: {cause}"[:300])
        return None
    print(f"OK   {name}: {value!r}"[:200])
    return value


async def run(url: str, queues: list[str] | None) -> None:
    app = aioq.App(url, prefix="probe")

    @app.task
    async def add(a: int, b: int) -> int:
        return a + b

    await step("ping", app.ping())
    job = await step("kiq", add.kiq(1, 2))
    worker = aioq.Worker(app, block=0.1, queues=queues)
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(2)
    if running.done():
        await step("worker.run", running)
    if job is not None:
        await step("result", job.result(timeout=5))
        await step("state", job.state())
    worker.stop()
    if not running.done():
        await step("worker stop", running)
    await app.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patch", action="store_true")
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--queues", default="")
    opts = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    url = os.environ["AIOQ_REDIS_CLUSTER_URL"]
    install(url, patch=opts.patch, batch=opts.batch)
    asyncio.run(run(url, opts.queues.split(",") if opts.queues else None))


if __name__ == "__main__":
    main()

"""The soak's app and tasks (``benchmarks/soak.py``), configured from the environment.

``soak.py`` sets ``SOAK_REDIS_URL`` (its private Redis) and ``SOAK_RESULT_TTL``
before importing this module; its workers import it as ``benchmarks.soak_app:app``.
"""

from __future__ import annotations

import os

import aioq

PREFIX = "soak"
STREAM = f"{PREFIX}:{{default}}:stream"
"""The default queue's stream: empty once every job's result is written."""

app = aioq.App(
    os.environ.get("SOAK_REDIS_URL"),
    prefix=PREFIX,
    result_ttl=float(os.environ.get("SOAK_RESULT_TTL", "60")),
)


@app.task(name="soak.noop")
async def noop() -> None:
    return None


@app.task(name="soak.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="soak.tsum")
async def tsum(values: list[int]) -> int:
    return sum(values)

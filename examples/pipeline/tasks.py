"""A small document pipeline: fetch a batch, analyse each document in parallel,
aggregate the results — ``chain(fetch, chord(group of analyse, summarize))``.

Run it with ``make pipeline`` (starts a worker, sends the workflow, shows
progress, prints the report).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random

import msgspec

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_DEMO_PREFIX", "aioq-pipeline"))


class Doc(msgspec.Struct):
    id: int
    text: str


class Stats(msgspec.Struct):
    doc_id: int
    words: int
    digest: str


@app.task(retries=2, retry_backoff=0.1)
async def fetch(ctx: aioq.Context, batch: int, size: int) -> list[Doc]:
    """Stands in for an HTTP call: returns ``size`` documents, reporting progress."""
    docs = []
    for i in range(size):
        await asyncio.sleep(0.005)
        words = " ".join(random.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(50 + i))
        docs.append(Doc(id=batch * 1000 + i, text=words))
        await ctx.progress(i + 1, total=size, stage="fetching")
    return docs


@app.task
async def analyse(docs: list[Doc], index: int) -> Stats:
    """One member of the group: the whole batch comes first (the previous step's
    result), then this member's index."""
    doc = docs[index]
    await asyncio.sleep(random.uniform(0.01, 0.05))
    return Stats(doc.id, len(doc.text.split()), hashlib.sha256(doc.text.encode()).hexdigest()[:10])


@app.task
async def summarize(stats: list[Stats]) -> dict[str, int]:
    """The chord's callback: gets every member's result, in order."""
    return {"documents": len(stats), "words": sum(s.words for s in stats)}

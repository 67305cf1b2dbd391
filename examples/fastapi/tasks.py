"""The tasks of the FastAPI example. The worker::

aioq worker examples.fastapi.tasks:app
"""

from __future__ import annotations

import asyncio
import os

from aioq import App, Context

app = App(prefix=os.environ.get("AIOQ_PREFIX", "aioq"))


@app.task
async def add(x: int, y: int) -> int:
    return x + y


@app.task
async def render(ctx: Context, pages: int, seconds_per_page: float = 0.05) -> str:
    """Reports its progress page by page (streamed to clients as Server-Sent Events)."""
    for page in range(1, pages + 1):
        await asyncio.sleep(seconds_per_page)
        await ctx.progress(page, pages, page=page)
    return f"rendered {pages} pages"

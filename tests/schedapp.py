"""Schedules run by scheduler *processes* in the scheduling tests
(``aioq scheduler tests.schedapp:app``). The key prefix comes from the
environment so each test is isolated."""

from __future__ import annotations

import os

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-sched"))


@app.periodic(every=1.0)
async def second() -> str:
    return "second"


@app.task(cron="* * * * *")
async def minute() -> str:
    return "minute"


@app.task(name="echo", queue="sched")
async def echo(text: str) -> str:
    return text


app.schedule(echo.s("quarter"), every=0.25, name="quarter")
app.schedule(echo.s("seoul"), cron="0 9 * * *", tz="Asia/Seoul", name="seoul-morning")

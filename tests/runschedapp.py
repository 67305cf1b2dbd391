"""An app for the run-time schedule tests (``aioq scheduler`` processes and
``aioq schedule …`` load it): one schedule in its code, the rest added at run
time. The key prefix comes from the environment so each test is isolated."""

from __future__ import annotations

import os

import aioq

app = aioq.App(prefix=os.environ.get("AIOQ_TEST_PREFIX", "aioqtest-runsched"))


@app.task(name="echo")
async def echo(text: str) -> str:
    return text


app.schedule(echo.s("code"), every=0.2, name="in-code")

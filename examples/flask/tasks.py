"""The tasks of the Flask example. The worker::

aioq worker examples.flask.tasks:app
"""

from __future__ import annotations

import os

from aioq import App

app = App(prefix=os.environ.get("AIOQ_PREFIX", "aioq"))


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def divide(x: float, y: float) -> float:
    return x / y

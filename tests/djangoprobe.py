"""A task for the Django tests only: whether its thread's database connection was
still open when it started (the worker imports it with ``--include``)."""

from __future__ import annotations

import threading
from typing import Any

from django.db import connection
from mysite.aioq_app import app


@app.task
def db_probe() -> dict[str, Any]:
    open_at_start = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"open_at_start": open_at_start, "thread": threading.get_ident()}

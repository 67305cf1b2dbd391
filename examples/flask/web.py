"""A Flask app that sends jobs with ``delay()`` and waits with ``get()``::

    flask --app examples.flask.web run        # and, beside it:
    aioq worker examples.flask.tasks:app

    curl -X POST localhost:5000/add -H 'content-type: application/json' -d '{"x": 2, "y": 3}'
    curl 'localhost:5000/jobs/<id>?wait=5'

Flask views are sync: ``delay()`` and ``get()`` block the request's thread (not a
process: one background event loop and Redis client serve every thread).
"""

from __future__ import annotations

from typing import Any

from flask import Flask, request

from aioq import ResultTimeout, TaskFailed
from examples.flask.tasks import add, app, divide

web = Flask(__name__)


@web.post("/add")
def send_add() -> tuple[dict[str, Any], int]:
    data = request.get_json()
    job = add.delay(data["x"], data["y"])
    return {"job": job.id}, 202


@web.post("/divide")
def divide_now() -> tuple[dict[str, Any], int]:
    """Send and wait in one request (fine for jobs that take well under a second)."""
    data = request.get_json()
    try:
        return {"result": divide.delay(data["x"], data["y"]).get(timeout=5)}, 200
    except TaskFailed as exc:
        return {"error": f"{exc.type}: {exc.message}"}, 422


@web.get("/jobs/<job_id>")
def job_result(job_id: str) -> tuple[dict[str, Any], int]:
    """The job's result, waiting up to ``?wait=`` seconds; 202 while it runs."""
    job = app.job_sync(job_id)
    try:
        return {"job": job_id, "result": job.get(timeout=float(request.args.get("wait", 5)))}, 200
    except ResultTimeout:
        return {"job": job_id, "state": job.state().value}, 202
    except TaskFailed as exc:
        return {"job": job_id, "error": f"{exc.type}: {exc.message}"}, 422

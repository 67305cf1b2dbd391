"""A FastAPI app on aioq::

    uvicorn examples.fastapi.main:api         # and, beside it:
    aioq worker examples.fastapi.tasks:app

- the lifespan opens the App's connections and closes them at shutdown;
- a dependency (``Queue``) gives each endpoint the App;
- ``POST /tasks/{name}`` sends a task by name (``app.send``, Celery's
  ``send_task``); only the App's registered tasks are accepted here;
- ``GET /jobs/{id}?timeout=…`` waits for the result, at most ``timeout`` seconds
  (pushed by the worker, not polled), and answers 202 with the state if it is
  not done by then;
- ``GET /jobs/{id}/events`` streams the job's progress as Server-Sent Events.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from aioq import App, ArgumentError, ConfigurationError, ResultTimeout, TaskFailed
from examples.fastapi.tasks import app as queue

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    async with queue:  # closes the App's connections on shutdown
        await queue.ping()  # fail at start-up, not at the first request, without Redis
        yield


api = FastAPI(lifespan=lifespan)


def get_queue() -> App:
    return queue


Queue = Annotated[App, Depends(get_queue)]


class Call(BaseModel):
    args: list[Any] = []
    kwargs: dict[str, Any] = {}


@api.post("/tasks/{name}", status_code=202)
async def send(name: str, call: Call, app: Queue) -> dict[str, str]:
    if name not in app.task_names:
        raise HTTPException(404, f"no task named {name!r}")
    try:
        job = await app.send(name, call.args, call.kwargs)
    except (ArgumentError, ConfigurationError) as exc:  # arguments that do not fit
        raise HTTPException(422, str(exc)) from exc
    return {"job": job.id}


@api.get("/jobs/{job_id}")
async def result(job_id: str, app: Queue, timeout: float = 5.0) -> JSONResponse:
    job = app.job(job_id)
    try:
        value = await job.result(timeout=min(timeout, 30.0))
    except ResultTimeout:
        state = await job.state()
        return JSONResponse({"job": job_id, "state": state.value}, status_code=202)
    except TaskFailed as exc:
        return JSONResponse({"job": job_id, "error": f"{exc.type}: {exc.message}"}, 422)
    return JSONResponse({"job": job_id, "result": value})


@api.get("/jobs/{job_id}/events")
async def events(job_id: str, app: Queue) -> StreamingResponse:
    """``event: progress`` for each report, then ``event: end`` with the final state."""

    async def stream() -> AsyncIterator[bytes]:
        async for update in app.job(job_id).updates():
            kind = "end" if update.is_final else "progress"
            data = msgspec.json.encode({"state": update.state.value, "progress": update.progress})
            yield b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n"
            if update.is_final:
                return

    return StreamingResponse(stream(), media_type="text/event-stream")

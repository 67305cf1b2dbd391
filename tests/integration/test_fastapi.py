"""examples/fastapi through httpx's ASGI transport (the app's lifespan included)
against a real ``aioq worker`` process."""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the FastAPI example needs fastapi (in the dev extra)")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx (in the dev extra)")

import httpx

from tests.webprocs import worker_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def main(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    env = {"AIOQ_REDIS_URL": redis_url, "AIOQ_PREFIX": f"aioqtest-fa-{uuid.uuid4().hex[:8]}"}
    module = importlib.import_module("examples.fastapi.main")
    tasks = importlib.import_module("examples.fastapi.tasks")
    # the example's App, pointed at this test's Redis and prefix
    tasks.app.__init__(redis_url, prefix=env["AIOQ_PREFIX"])
    for task in (tasks.add, tasks.render):
        tasks.app.registry.add(task.definition)
    log: Path = tmp_path_factory.mktemp("fastapi") / "worker.log"
    with worker_process(["examples.fastapi.tasks:app", "-c", "20"], env, log):
        yield module


@pytest.fixture
async def client(main: ModuleType) -> AsyncIterator[httpx.AsyncClient]:
    api = main.api
    async with api.router.lifespan_context(api):  # opens, then closes the App
        transport = httpx.ASGITransport(app=api)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


async def test_send_by_name_then_await_the_result(client: httpx.AsyncClient) -> None:
    sent = await client.post("/tasks/examples.fastapi.tasks.add", json={"args": [2, 40]})
    assert sent.status_code == 202
    job_id = sent.json()["job"]
    done = await client.get(f"/jobs/{job_id}", params={"timeout": 10})
    assert (done.status_code, done.json()) == (200, {"job": job_id, "result": 42})


async def test_bad_names_and_arguments_are_refused(client: httpx.AsyncClient) -> None:
    assert (await client.post("/tasks/nope", json={})).status_code == 404
    # send() by name checks arguments on the worker: such a job fails there
    wrong = await client.post(
        "/tasks/examples.fastapi.tasks.add", json={"args": [1], "kwargs": {"z": 2}}
    )
    assert wrong.status_code == 202
    failed = await client.get(f"/jobs/{wrong.json()['job']}", params={"timeout": 10})
    assert failed.status_code == 422, failed.json()
    assert failed.json()["error"] == (
        "ArgumentError: invalid arguments: examples.fastapi.tasks.add: "
        "missing a required argument: 'y'"
    )


async def test_a_result_not_ready_in_time_answers_202(client: httpx.AsyncClient) -> None:
    sent = await client.post("/tasks/examples.fastapi.tasks.render", json={"args": [4, 0.25]})
    job_id = sent.json()["job"]
    waiting = await client.get(f"/jobs/{job_id}", params={"timeout": 0.1})
    assert waiting.status_code == 202
    assert waiting.json()["state"] in {"queued", "running"}


async def test_progress_streams_as_server_sent_events(client: httpx.AsyncClient) -> None:
    sent = await client.post("/tasks/examples.fastapi.tasks.render", json={"args": [5, 0.1]})
    job_id = sent.json()["job"]
    events: list[tuple[str, dict[str, Any]]] = []
    async with client.stream("GET", f"/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
    assert events[-1] == ("end", {"state": "succeeded", "progress": None})
    reports = [data["progress"]["current"] for kind, data in events[:-1] if data["progress"]]
    assert all(kind == "progress" for kind, _ in events[:-1])
    # each report once, in order, up to the last page (the first event may be the
    # record's state before any report)
    assert reports == sorted(set(reports)) and reports[-1] == 5 and len(reports) >= 3
    done = await client.get(f"/jobs/{job_id}")
    assert done.json()["result"] == "rendered 5 pages"

"""examples/flask: Flask's test client against a real ``aioq worker`` process."""

from __future__ import annotations

import importlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("flask", reason="the Flask example needs flask (in the dev extra)")

from tests.webprocs import worker_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def web(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    env = {"AIOQ_REDIS_URL": redis_url, "AIOQ_PREFIX": f"aioqtest-fl-{uuid.uuid4().hex[:8]}"}
    module = importlib.import_module("examples.flask.web")
    app = module.app
    # the example's App, pointed at this test's Redis and prefix
    app.__init__(redis_url, prefix=env["AIOQ_PREFIX"])
    for task in (module.add, module.divide):
        app.registry.add(task.definition)
    log: Path = tmp_path_factory.mktemp("flask") / "worker.log"
    with worker_process(["examples.flask.tasks:app", "-c", "8"], env, log):
        yield module


def test_delay_then_get(web: ModuleType) -> None:
    client = web.web.test_client()
    sent = client.post("/add", json={"x": 2, "y": 3})
    assert sent.status_code == 202
    job_id = sent.get_json()["job"]
    done = client.get(f"/jobs/{job_id}?wait=10")
    assert (done.status_code, done.get_json()) == (200, {"job": job_id, "result": 5})


def test_send_and_wait_in_one_request_and_errors(web: ModuleType) -> None:
    client = web.web.test_client()
    assert client.post("/divide", json={"x": 1, "y": 4}).get_json() == {"result": 0.25}
    failed = client.post("/divide", json={"x": 1, "y": 0})
    assert failed.status_code == 422
    assert failed.get_json() == {"error": "ZeroDivisionError: float division by zero"}


def test_a_job_still_waiting_answers_202_with_its_state(web: ModuleType) -> None:
    client = web.web.test_client()
    waiting = client.get("/jobs/never-sent?wait=0.2")
    assert (waiting.status_code, waiting.get_json()) == (
        202,
        {"job": "never-sent", "state": "queued"},
    )

"""The dashboard's JSON API, pages and actions (aioq.dashboard.create_app) against
a real Redis and a real worker, through httpx's ASGI transport; and the
``aioq dashboard`` command as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

import aioq
from aioq.dashboard import create_app
from aioq.testing import RunningWorker
from tests import dashapp
from tests.conftest import on_cluster_too

ROOT = Path(__file__).resolve().parents[2]
Runner = Callable[..., AbstractAsyncContextManager[RunningWorker]]


@pytest.fixture
async def dash(broker_url: str, prefix: str) -> AsyncIterator[aioq.App]:
    """``tests.dashapp:app`` on this test's prefix (on the cluster too where marked)."""
    dashapp.app.__init__(broker_url, prefix=prefix, visibility_timeout=2.0)  # type: ignore[misc]
    for task in (dashapp.add, dashapp.boom, dashapp.parked, dashapp.slow):
        dashapp.app.registry.add(task.definition)
    yield dashapp.app
    await dashapp.app.aclose()


def client(asgi: Any, base: str = "http://dash") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=base)


async def csrf_of(c: httpx.AsyncClient, path: str = "/") -> str:
    """Load a page (which sets the CSRF cookie) and return the token."""
    assert (await c.get(path)).status_code == 200
    token = c.cookies.get("aioq_csrf")
    assert token
    return token


async def eventually(check: Callable[[], Any], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


@on_cluster_too
async def test_status_counts_throughput_and_workers(dash: aioq.App, aioq_worker: Runner) -> None:
    async with aioq_worker(dash, queues=["default"]) as w, client(create_app(dash)) as c:
        for n in range(3):
            await dashapp.parked.kiq(n)
        jobs = [await dashapp.add.kiq(n, 1) for n in range(4)]
        await w.drain()
        assert [await j.result(timeout=5) for j in jobs] == [1, 2, 3, 4]
        r = await c.get("/api/status")
        assert r.status_code == 200
        body = r.json()
        queues = {q["name"]: q for q in body["queues"]}
        assert queues["parked"]["ready"] == 3 and queues["parked"]["delivered"] == 0
        assert queues["default"]["ready"] == 0 and queues["default"]["delivered"] == 4
        assert set(body["throughput"]) == {"t", "total", "queues"}

        async def registered() -> bool:
            found = (await c.get("/api/workers")).json()
            return [x["id"] for x in found] == [w.worker.id]

        await eventually(registered)
        page = (await c.get("/")).text
        assert 'data-queue="parked"' in page and w.worker.id in page


@on_cluster_too
async def test_job_detail_of_succeeded_failed_queued_and_unknown(
    dash: aioq.App, aioq_worker: Runner
) -> None:
    async with aioq_worker(dash, queues=["default"]) as w, client(create_app(dash)) as c:
        ok = await dashapp.add.kiq(2, 3)
        bad = await dashapp.boom.kiq("kaboom")
        await w.drain()
        r = await c.get(f"/api/jobs/{ok.id}")
        assert r.status_code == 200
        d = r.json()
        assert d["info"]["state"] == "succeeded" and d["info"]["result"] == 5
        assert [e["what"] for e in d["timeline"]] == ["enqueued", "started", "finished"]
        assert d["args"] is None  # the message is gone once acked

        d = (await c.get(f"/api/jobs/{bad.id}")).json()
        assert d["info"]["state"] == "failed"
        assert d["info"]["error"]["type"] == "ValueError"
        assert "ValueError: kaboom" in d["info"]["error"]["traceback"]
        html = (await c.get(f"/jobs/{bad.id}")).text
        assert "ValueError: kaboom" in html and 'id="traceback"' in html

        # a workflow on a queue no worker reads: the first step is queued, with its args
        # and a link to the step after it
        flow = await aioq.chain(dashapp.parked.s(7), dashapp.parked.s()).kiq()
        first = flow.parent
        assert first is not None
        d = (await c.get(f"/api/jobs/{first.id}")).json()
        assert d["info"]["state"] == "queued" and d["place"] == "stream"
        assert d["args"] == [7] and d["next"] == [flow.id]
        assert f'href="/jobs/{flow.id}"' in (await c.get(f"/jobs/{first.id}")).text

        assert (await c.get("/api/jobs/no-such-job")).status_code == 404
        assert (await c.get("/jobs/no-such-job")).status_code == 404
        r = await c.get("/jobs", params={"id": ok.id}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == f"/jobs/{ok.id}"


async def test_jobs_lists_and_bad_input(dash: aioq.App) -> None:
    async with client(create_app(dash)) as c:
        sent = [await dashapp.parked.kiq(n) for n in range(3)]
        r = await c.get("/api/jobs", params={"state": "queued", "queue": "parked", "limit": 2})
        assert r.status_code == 200
        assert [j["id"] for j in r.json()] == [j.id for j in sent[:2]]
        for params, wanted in (
            ({"state": "lost"}, "state must be one of"),
            ({"state": "queued", "limit": "x"}, "limit must be a whole number"),
            ({"state": "queued", "limit": "0"}, "limit must be 1..1000"),
        ):
            r = await c.get("/api/jobs", params=params)
            assert r.status_code == 400 and wanted in r.json()["error"]


@on_cluster_too
async def test_dead_letter_redrive_through_the_api(dash: aioq.App, aioq_worker: Runner) -> None:
    site = create_app(dash)
    async with client(site) as c:
        async with aioq_worker(dash, queues=["default"]):
            doomed = await dash.send("dash.fixed.later", args=[4])
            with pytest.raises(aioq.TaskFailed):
                await doomed.result(timeout=10)
        dead = (await c.get("/api/dead")).json()
        assert [(d["queue"], d["job_id"], d["task"]) for d in dead] == [
            ("default", doomed.id, "dash.fixed.later")
        ]
        assert "payload" not in dead[0]
        detail = (await c.get(f"/api/jobs/{doomed.id}")).json()
        assert detail["place"] == "dead" and detail["entry"] == dead[0]["id"]
        assert detail["dead_reason"].startswith("unknown task")

        # without the CSRF token (or with a forged one) nothing moves
        r = await c.post("/api/dead/default/retry")
        assert r.status_code == 403
        r = await c.post("/api/dead/default/retry", headers={"X-CSRF-Token": "forged.0"})
        assert r.status_code == 403
        assert len((await c.get("/api/dead")).json()) == 1

        @dash.task(name="dash.fixed.later")
        async def fixed(x: int) -> int:
            return x * 10

        token = await csrf_of(c)
        async with aioq_worker(dash, queues=["default"]) as w:
            r = await c.post(
                "/api/dead/default/retry",
                json={"ids": [dead[0]["id"]]},
                headers={"X-CSRF-Token": token},
            )
            assert r.status_code == 200 and r.json()["count"] == 1
            assert await doomed.result(timeout=10) == 40
            await w.drain()
        assert (await c.get("/api/dead")).json() == []


@on_cluster_too
async def test_purge_asks_first_then_purges(dash: aioq.App) -> None:
    async with client(create_app(dash)) as c:
        jobs = [await dashapp.parked.kiq(n) for n in range(3)]
        token = await csrf_of(c)
        form = {"queue": "parked", "csrf": token, "next": "/queues/parked"}

        r = await c.post("/actions/purge", data=form)  # the confirm step: nothing done yet
        assert r.status_code == 200
        assert "Drop the 3 ready message(s) of queue &#39;parked&#39;" in r.text
        assert (await dash.status(["parked"])).queues[0].ready == 3

        r = await c.post("/actions/purge", data={**form, "csrf": "stale.1", "confirm": "yes"})
        assert r.status_code == 403
        assert (await dash.status(["parked"])).queues[0].ready == 3

        r = await c.post("/actions/purge", data={**form, "confirm": "yes"}, follow_redirects=False)
        assert r.status_code == 303
        assert r.headers["location"].startswith("/queues/parked?done=purged+3+ready")
        assert (await dash.status(["parked"])).queues[0].ready == 0
        assert {await j.state() for j in jobs} == {aioq.JobState.ABORTED}

        # the JSON API: same action, CSRF header, no confirm step
        more = [await dashapp.parked.kiq(n) for n in range(2)]
        r = await c.post("/api/queues/parked/purge", headers={"X-CSRF-Token": token})
        message = "purged 2 ready message(s) from 'parked'"
        assert r.json() == {"ok": True, "count": 2, "message": message}
        assert {await j.state() for j in more} == {aioq.JobState.ABORTED}

        # the redirect never leaves the dashboard
        r = await c.post(
            "/actions/purge",
            data={**form, "confirm": "yes", "next": "https://elsewhere.example/"},
            follow_redirects=False,
        )
        assert r.headers["location"].startswith("/?done=")


async def test_abort_and_unknown_action(dash: aioq.App) -> None:
    async with client(create_app(dash)) as c:
        job = await dashapp.parked.kiq(1)
        token = await csrf_of(c)
        r = await c.post(f"/api/jobs/{job.id}/abort", headers={"X-CSRF-Token": token})
        assert r.json()["count"] == 1 and await job.state() is aioq.JobState.ABORTED
        r = await c.post("/actions/explode", data={"csrf": token, "confirm": "yes"})
        assert r.status_code == 400 and "unknown action" in r.text
        r = await c.post("/actions/purge", data={"csrf": token, "confirm": "yes"})
        assert r.status_code == 400 and "purge needs a queue" in r.text


async def test_schedules_pause_and_resume_from_the_dashboard(dash: aioq.App) -> None:
    """The page lists ``app.schedules.list()``; its buttons pause and resume for real."""

    @dash.periodic(every=3600, name="hourly")
    async def hourly() -> None:
        pass

    async with client(create_app(dash)) as c:
        body = (await c.get("/api/schedules")).json()
        assert body["controls"] is True
        [row] = body["schedules"]
        assert (row["name"], row["source"], row["state"]) == ("hourly", "code", "active")
        assert row["next_run"] != "-" and row["last_run"] == "-" and row["last_job"] == "-"
        page = (await c.get("/schedules")).text
        assert 'data-action="pause"' in page and 'data-action="resume"' in page
        assert "Read-only" not in page
        token = await csrf_of(c)
        r = await c.post("/api/schedules/hourly/pause", headers={"X-CSRF-Token": token})
        assert r.json() == {"ok": True, "count": 1, "message": "paused schedule 'hourly'"}
        [info] = await dash.schedules.list()
        assert info.paused and info.next_run is None
        r = await c.post("/api/schedules/hourly/pause", headers={"X-CSRF-Token": token})
        again = "schedule 'hourly' was paused already"
        assert r.json() == {"ok": True, "count": 0, "message": again}
        [row] = (await c.get("/api/schedules")).json()["schedules"]
        assert (row["state"], row["next_run"]) == ("paused", "-")
        form = {"schedule": "hourly", "csrf": token, "next": "/schedules"}
        r = await c.post("/actions/resume", data=form)
        assert "Resume schedule &#39;hourly&#39;?" in r.text
        r = await c.post("/actions/resume", data={**form, "confirm": "yes"})
        assert r.status_code == 303
        [info] = await dash.schedules.list()
        assert not info.paused and info.next_run is not None
        r = await c.post("/api/schedules/nope/pause", headers={"X-CSRF-Token": token})
        assert r.status_code == 400 and r.json()["error"] == "no schedule named 'nope'"


async def test_mounted_under_a_prefix(dash: aioq.App) -> None:
    outer = Starlette(routes=[Mount("/ops/aioq", create_app(dash))])
    async with client(outer) as c:
        await dashapp.parked.kiq(1)
        r = await c.get("/ops/aioq/")
        assert r.status_code == 200
        assert 'href="/ops/aioq/queues/parked"' in r.text
        assert 'action="/ops/aioq/actions/purge"' in r.text
        assert 'data-base="/ops/aioq"' in r.text
        assert "Path=/ops/aioq" in r.headers["set-cookie"]
        assert (await c.get("/ops/aioq/api/status")).json()["queues"]
        token = c.cookies["aioq_csrf"]
        r = await c.post(
            "/ops/aioq/actions/purge",
            data={"queue": "parked", "csrf": token, "confirm": "yes", "next": "/ops/aioq/"},
            follow_redirects=False,
        )
        assert r.headers["location"].startswith("/ops/aioq/?done=purged+1")


async def test_auth_and_token_and_security_headers(dash: aioq.App) -> None:
    async with client(create_app(dash, auth=("ops", "s3cret"))) as c:
        r = await c.get("/api/status")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        assert (await c.get("/api/status", auth=("ops", "wrong"))).status_code == 401
        r = await c.get("/", auth=("ops", "s3cret"))
        assert r.status_code == 200
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
    async with client(create_app(dash, token="t0ken")) as c:
        assert (await c.get("/api/status")).status_code == 401
        r = await c.get("/api/status", headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200
        r = await c.get("/", params={"token": "t0ken"})  # once in a browser...
        assert r.status_code == 200
        assert (await c.get("/api/status")).status_code == 200  # ...then the cookie
    with pytest.raises(ValueError, match="poll_interval"):
        create_app(dash, poll_interval=0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_cli_serves_and_refuses_open_binds_without_auth(redis_url: str, prefix: str) -> None:
    env = {
        **os.environ,
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_TEST_PREFIX": prefix,
        "PYTHONPATH": str(ROOT),
    }
    cmd = [sys.executable, "-m", "aioq", "dashboard", "tests.dashapp:app"]
    refused = subprocess.run(
        [*cmd, "--host", "0.0.0.0"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert refused.returncode == 1
    assert "refusing to serve the dashboard on 0.0.0.0 without --auth or --token" in refused.stderr

    port = free_port()
    with subprocess.Popen(
        [*cmd, "--port", str(port)], env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True
    ) as proc:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    r = httpx.get(f"http://127.0.0.1:{port}/api/status", timeout=2)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    assert time.monotonic() < deadline, "the dashboard did not start within 20 s"
                    time.sleep(0.1)
            assert r.status_code == 200
            assert "parked" in {q["name"] for q in r.json()["queues"]}
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=15)
            assert proc.returncode == 0, err
        finally:
            if proc.poll() is None:
                proc.kill()

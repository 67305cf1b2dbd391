"""examples/django and aioq.contrib.django, with Django's test client against a
real ``aioq worker mysite.aioq_app:app`` process (sqlite, shared by both)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("django", reason="the Django integration needs: pip install 'aioq[django]'")

from tests.webprocs import worker_process

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "examples" / "django"

pytestmark = pytest.mark.slow


class Site:
    def __init__(self, app: Any, worker: subprocess.Popen[bytes], log: Path) -> None:
        self.app = app
        self.worker = worker
        self.log = log

    def wait(self, job_id: str, timeout: float = 15.0) -> Any:
        from aioq import TaskFailed

        try:
            return self.app.job_sync(job_id).get(timeout=timeout)
        except (TimeoutError, TaskFailed) as exc:
            raise AssertionError(f"{exc}\nworker log:\n{self.log.read_text()}") from exc


@pytest.fixture(scope="module")
def site(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("django")
    prefix = f"aioqtest-dj-{uuid.uuid4().hex[:8]}"
    env = {
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "AIOQ_REDIS_URL": redis_url,
        "AIOQ_PREFIX": prefix,
        "SHOP_DB": str(tmp / "shop.sqlite3"),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)  # read once, by the settings and mysite.aioq_app
    sys.path.insert(0, str(SITE))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    from mysite.aioq_app import app

    log = tmp / "worker.log"
    args = ["mysite.aioq_app:app", "--include", "tests.djangoprobe", "--threads", "1", "-c", "8"]
    try:
        with worker_process(args, env, log, cwd=SITE) as worker:
            yield Site(app, worker, log)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def post(path: str, body: dict[str, Any]) -> Any:
    from django.test import Client

    return Client().post(path, json.dumps(body), content_type="application/json")


def get(path: str) -> Any:
    from django.test import Client

    return Client().get(path)


def test_the_worker_found_every_task(site: Site) -> None:
    text = site.log.read_text()
    assert "5 task(s) registered" in text, text
    for name in (
        "shop.tasks.fulfil_order",
        "shop.tasks.email_receipt",
        "shop.tasks.count_orders",
        "shop.tasks.restock",  # a django.tasks @task, registered by AioqBackend
        "tests.djangoprobe.db_probe",
    ):
        assert name in text


def test_an_order_is_sent_on_commit_and_fulfilled_by_the_worker(site: Site) -> None:
    from shop.models import Order, Stock

    Stock.objects.update_or_create(sku="apple", defaults={"quantity": 10})
    created = post("/orders/", {"sku": "apple", "quantity": 3})
    assert created.status_code == 201, created.content
    body = created.json()
    assert site.wait(body["job"]) == "fulfilled"

    status = get(body["status"]).json()
    assert status["state"] == "succeeded" and status["result"] == "fulfilled"
    assert status["task"] == "shop.tasks.fulfil_order"
    assert status["progress"] == {"current": 2, "total": 2}
    assert Order.objects.get(pk=body["order"]).status == "fulfilled"
    assert Stock.objects.get(sku="apple").quantity == 7

    # the async ORM, in an async task; read back by an async view
    receipt = post(f"/orders/{body['order']}/receipt/", {}).json()
    assert site.wait(receipt["job"]) == f"receipt for order {body['order']} (fulfilled)"
    detail = get(f"/orders/{body['order']}/").json()
    assert detail == {"order": body["order"], "status": "fulfilled", "receipt_sent": True}


def test_a_rolled_back_order_sends_nothing(site: Site) -> None:
    from shop.models import Order

    refused = post("/orders/", {"sku": "pear", "quantity": 0})
    assert refused.status_code == 400
    job_id = refused.json()["job"]
    assert not Order.objects.filter(job_id=job_id).exists()
    info = site.app.job_sync(job_id).info()
    assert info.task is None  # never sent: no record


def test_sync_tasks_close_their_database_connections(site: Site) -> None:
    from tests.djangoprobe import db_probe

    first = db_probe.delay().get(timeout=10)
    second = db_probe.delay().get(timeout=10)
    # One thread (--threads 1) ran both: without the hygiene, the connection the
    # first opened would still be open when the second started.
    assert first["thread"] == second["thread"]
    assert second["open_at_start"] is False


def test_django_tasks_run_on_the_worker(site: Site) -> None:
    from shop.tasks import restock

    from aioq.contrib.django._compat import TaskResultStatus

    sent = post("/restock/", {"sku": "kiwi", "quantity": 4}).json()
    assert sent["status"] == "READY"
    assert site.wait(sent["result"]) == 4
    done = get(f"/restock/{sent['result']}/").json()
    assert done == {"result": sent["result"], "status": "SUCCESSFUL", "stock": 4}

    result = restock.get_result(sent["result"])
    assert result.status is TaskResultStatus.SUCCESSFUL and result.return_value == 4
    assert result.is_finished and result.attempts == 1
    assert result.enqueued_at is not None and result.finished_at is not None
    assert result.task.func is restock.func

    failed = restock.enqueue("kiwi", -1)
    with pytest.raises(AssertionError, match="cannot restock -1 of kiwi"):
        site.wait(failed.id)
    failed.refresh()
    assert failed.status is TaskResultStatus.FAILED
    assert failed.errors[0].exception_class is ValueError
    assert "cannot restock -1 of kiwi" in failed.errors[0].traceback


def test_django_task_results_async_and_missing(site: Site) -> None:
    from shop.tasks import restock

    from aioq.contrib.django._compat import TaskResultDoesNotExist, TaskResultStatus

    async def main() -> Any:
        try:
            sent = await restock.aenqueue("fig", 2)
            await site.app.job(sent.id).result(timeout=10)
            return await restock.aget_result(sent.id)
        finally:
            await site.app.aclose()

    result = asyncio.run(main())
    assert result.status is TaskResultStatus.SUCCESSFUL and result.return_value == 2
    with pytest.raises(TaskResultDoesNotExist):
        restock.get_result("no-such-job")
    with pytest.raises(Exception, match="unexpected keyword argument 'colour'"):
        restock.enqueue("fig", 1, colour="red")


def test_states_and_priorities_map_onto_djangos(site: Site) -> None:
    from aioq import JobState
    from aioq.contrib.django._compat import TaskResultStatus as S
    from aioq.contrib.django.backend import priority_of, status_of

    assert {state: status_of(state) for state in JobState} == {
        JobState.SCHEDULED: S.READY,
        JobState.QUEUED: S.READY,
        JobState.RETRYING: S.READY,
        JobState.RUNNING: S.RUNNING,
        JobState.SUCCEEDED: S.SUCCESSFUL,
        JobState.FAILED: S.FAILED,
        JobState.ABORTED: S.FAILED,
    }
    assert [priority_of(p) for p in (-100, -1, 0, 1, 11, 12, 50, 99, 100)] == [
        0, 0, 0, 1, 1, 2, 5, 9, 9
    ]  # fmt: skip


def test_backend_options_and_the_worker_entry_point(site: Site, redis_url: str) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from aioq.contrib.django import AioqBackend

    one = AioqBackend("own", {"OPTIONS": {"url": redis_url, "prefix": "own-app"}})
    two = AioqBackend("own", {"OPTIONS": {"url": redis_url, "prefix": "own-app"}})
    assert one.app is two.app  # Django makes a backend per thread: one App per process
    assert (one.app.url, one.app.prefix) == (redis_url, "own-app")
    assert one.app.sync_task_wrapper is not None  # the connection hygiene
    for options, message in [
        ({"url": redis_url, "result_ttl": -1}, "result_ttl must be"),
        ({"app": "mysite.aioq_app:app", "url": redis_url}, "either 'app' or App"),
        ({"app": "mysite.settings:DEBUG"}, "is a bool, not an aioq.App"),
        ({"app": "mysite.nowhere:app"}, "No module named 'mysite.nowhere'"),
    ]:
        with pytest.raises(ImproperlyConfigured, match=message):
            AioqBackend("bad", {"OPTIONS": options})

    import aioq.contrib.django.worker as entry

    assert entry.app is site.app

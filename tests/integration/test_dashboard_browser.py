"""The dashboard end to end in a real headless Chromium (Debian's ``chromium``,
driven by Playwright with the system browser: nothing is downloaded): the
overview's counts follow jobs as they are sent, a failed job shows its traceback,
and a dead letter is re-driven from the page and succeeds. Screenshots go to
``tests/artifacts/`` (git-ignored)."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

import aioq
from aioq.dashboard import create_app
from aioq.testing import RunningWorker
from tests import dashapp
from tests.integration.test_dashboard import dash  # noqa: F401  (the fixture)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
Runner = Callable[..., AbstractAsyncContextManager[RunningWorker]]

playwright = pytest.importorskip(
    "playwright.async_api", reason="the browser test needs playwright (pip install '.[dev]')"
)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH for the browser test (apt-get install -y chromium; "
    ".ci/run installs it)",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def served(dash: aioq.App) -> AsyncIterator[str]:  # noqa: F811
    """The dashboard of ``dash`` on a loopback port, served by uvicorn in this loop."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(
        create_app(dash, poll_interval=0.3),
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    async with asyncio.timeout(10):
        while not server.started:
            assert not serving.done(), serving.result()
            await asyncio.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await asyncio.wait_for(serving, 10)


async def test_in_chromium(
    dash: aioq.App,  # noqa: F811
    served: str,
    aioq_worker: Runner,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    expect = playwright.expect
    async with playwright.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.on(
                "console",
                lambda m: errors.append(f"{m.location}: {m.text}") if m.type == "error" else None,
            )

            async with aioq_worker(dash, queues=["default"]) as w:
                # the overview follows the counts as jobs are sent
                await page.goto(served + "/")
                ready = page.locator('tr[data-queue="parked"] [data-k="ready"]')
                await expect(ready).to_have_text("0")
                for n in range(5):
                    await dashapp.parked.kiq(n)
                await expect(ready).to_have_text("5", timeout=5000)
                for n in range(20):
                    await dashapp.add.kiq(n, n)
                await w.drain()
                await expect(page.locator("#chart path.line")).to_have_count(1, timeout=5000)
                await page.screenshot(path=ARTIFACTS / "dashboard-overview.png", full_page=True)

                # a failed job, opened by its id from the header: its traceback
                failed = await dashapp.boom.kiq("kaboom from the browser")
                with pytest.raises(aioq.TaskFailed):
                    await failed.result(timeout=10)
                await page.fill('input[name="id"]', failed.id)
                await page.click("form.find button")
                await expect(page.locator("#state")).to_have_text("failed")
                await expect(page.locator("#traceback")).to_contain_text(
                    "ValueError: kaboom from the browser"
                )
                await page.screenshot(path=ARTIFACTS / "dashboard-failed-job.png", full_page=True)

                # a message for a task no worker knows yet: dead-lettered
                doomed = await dash.send("dash.browser.fixed", args=[6])
                with pytest.raises(aioq.TaskFailed):
                    await doomed.result(timeout=10)

            @dash.task(name="dash.browser.fixed")
            async def fixed(x: int) -> int:
                return x * 7

            async with aioq_worker(dash, queues=["default"]):  # the fix ships
                await page.click('nav a:has-text("Failed")')
                row = page.locator("table.dead tbody tr", has_text=doomed.id)
                await expect(row).to_contain_text("unknown task")
                await row.locator('button[data-action="retry-dead"]').click()
                await expect(page.locator("#question")).to_contain_text("Put 1 dead letter(s)")
                await page.click("#confirm")
                await expect(page.locator("#flash")).to_have_text(
                    "re-queued 1 dead letter(s) on 'default'"
                )
                assert await doomed.result(timeout=10) == 42
                await page.goto(f"{served}/jobs/{doomed.id}")
                await expect(page.locator("#state")).to_have_text("succeeded")
                await expect(page.locator("pre.result")).to_have_text("42")
                await page.screenshot(path=ARTIFACTS / "dashboard-redriven.png", full_page=True)
            assert errors == [], "\n".join(errors)
        finally:
            await browser.close()

"""aioq.contrib.otel against a real worker, spans caught by the SDK's in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the dev extra installs opentelemetry-sdk")

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aioq
from aioq.contrib.otel import instrument
from tests.conftest import ROOT, WorkerRunner


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _by_name(found: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in found if s.name == name]


async def test_a_job_is_traced_from_kiq_into_the_worker(
    app: aioq.App, workers: WorkerRunner, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrument(app, tracer_provider=provider)
    instrument(app, tracer_provider=provider)  # twice: still one span each
    tracer = provider.get_tracer("test")

    @app.task(retries=1, retry_backoff=0.01)
    async def work(ctx: aioq.Context, x: int) -> int:
        with tracer.start_as_current_span("inside"):
            if ctx.attempt == 1:
                raise ConnectionError("first attempt fails")
            return x * 2

    @app.task
    def blocking() -> str:
        with tracer.start_as_current_span("inside sync"):
            return "ok"

    await workers.start(app)
    with tracer.start_as_current_span("request") as request:
        job = await work.kiq(21)
    assert await job.result(timeout=10) == 42
    assert await (await blocking.kiq()).result(timeout=10) == "ok"

    found = exporter.get_finished_spans()
    (send, sync_send) = _by_name(found, "send default")
    assert send.kind is trace.SpanKind.PRODUCER
    assert send.parent is not None and send.parent.span_id == request.get_span_context().span_id
    assert send.attributes is not None and dict(send.attributes) == {
        "messaging.system": "aioq",
        "messaging.operation.type": "send",
        "messaging.operation.name": "send",
        "messaging.destination.name": "default",
        "messaging.message.id": job.id,
        "aioq.task.name": work.name,
    }
    attempts = [
        s for s in _by_name(found, "process default") if s.attributes["aioq.task.name"] == work.name
    ]  # type: ignore[index]
    assert [s.attributes["aioq.job.attempt"] for s in attempts] == [1, 2]  # type: ignore[index]
    trace_id = request.get_span_context().trace_id
    for attempt in attempts:
        assert attempt.kind is trace.SpanKind.CONSUMER
        assert attempt.context is not None and attempt.context.trace_id == trace_id
        assert attempt.parent is not None and attempt.parent.span_id == send.context.span_id  # type: ignore[union-attr]
        assert [link.context.span_id for link in attempt.links] == [send.context.span_id]  # type: ignore[union-attr]
        assert attempt.attributes is not None
        assert attempt.attributes["messaging.consumer.group.name"] == "workers"
        assert attempt.attributes["messaging.message.id"] == job.id
    failed, succeeded = attempts
    assert failed.status.status_code is trace.StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert succeeded.status.status_code is trace.StatusCode.UNSET
    inside = _by_name(found, "inside")
    assert [s.parent.span_id for s in inside] == [a.context.span_id for a in attempts]  # type: ignore[union-attr]
    # a sync task's body runs in a thread, still inside its process span
    (sync_process,) = [s for s in _by_name(found, "process default") if s not in attempts]
    (inside_sync,) = _by_name(found, "inside sync")
    assert inside_sync.parent.span_id == sync_process.context.span_id  # type: ignore[union-attr]
    assert sync_process.parent.span_id == sync_send.context.span_id  # type: ignore[union-attr]


async def test_workflow_steps_are_linked_step_to_step(
    app: aioq.App, workers: WorkerRunner, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    instrument(app, tracer_provider=provider)

    @app.task
    async def inc(x: int) -> int:
        return x + 1

    await workers.start(app)
    job = await aioq.chain(inc.s(1), inc.s(), inc.s()).kiq()
    assert await job.result(timeout=10) == 4
    found = exporter.get_finished_spans()
    (send,) = _by_name(found, "send default")  # one send: the workers send the next steps
    steps = sorted(_by_name(found, "process default"), key=lambda s: s.start_time or 0)
    assert len(steps) == 3
    parents = [s.parent.span_id for s in steps]  # type: ignore[union-attr]
    assert parents == [send.context.span_id, steps[0].context.span_id, steps[1].context.span_id]  # type: ignore[union-attr]
    assert len({s.context.trace_id for s in steps}) == 1  # type: ignore[union-attr]


def test_without_opentelemetry_aioq_runs_and_the_module_says_what_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry'] = None\n"  # as if it were not installed
        "import aioq\n"
        "app = aioq.App('redis://127.0.0.1:1')\n"
        "assert not app.hooks.enqueue and not app.hooks.middleware\n"
        "try:\n"
        "    import aioq.contrib.otel\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == (
        "aioq.contrib.otel needs the OpenTelemetry API: pip install 'aioq[otel]'"
    )

"""OpenTelemetry tracing for an aioq app (``pip install 'aioq[otel]'``).

    from aioq.contrib.otel import instrument
    instrument(app)          # in the producers and in the workers (same app module)

Every send gets a PRODUCER span (``send <queue>``) whose context travels in the
message's headers (``traceparent``, through the configured propagator); every
execution gets a CONSUMER span (``process <queue>``), a child of the send's
span with a link to it, so a trace follows a job from ``kiq()`` into the worker
and on to what its task sends. Retries carry the send's context (each attempt
is a child of the send); a workflow's follow-up steps carry the context of the
step before them, so step 2's span is a child of step 1's. Attributes follow
the OpenTelemetry messaging semantic conventions (``messaging.system = "aioq"``,
``messaging.operation.type``, ``messaging.destination.name``,
``messaging.message.id``, ``messaging.consumer.group.name``, …).

Built on the app's public hooks (``enqueue_middleware`` and ``middleware``): an
app that is not instrumented pays nothing, and aioq never imports this module
by itself.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
except ImportError as exc:  # pragma: no cover - exercised by a test that hides the package
    raise ImportError(
        "aioq.contrib.otel needs the OpenTelemetry API: pip install 'aioq[otel]'"
    ) from exc

from .._version import __version__

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from opentelemetry.util.types import AttributeValue

    from ..app import App
    from ..context import Context
    from ..hooks import Enqueue

__all__ = ["instrument"]

SYSTEM = "aioq"
CONSUMER_GROUP = "workers"
"""The Redis consumer group every aioq worker reads through."""

_instrumented: weakref.WeakSet[App] = weakref.WeakSet()


def instrument(app: App, *, tracer_provider: trace.TracerProvider | None = None) -> None:
    """Trace every send and every execution of ``app`` (see the module docstring).

    Call it once per app, in every process that sends or runs its tasks, before
    the worker starts. ``tracer_provider`` defaults to the global one.
    """
    if app in _instrumented:
        return
    _instrumented.add(app)
    tracer = trace.get_tracer("aioq", __version__, tracer_provider=tracer_provider)

    async def send_span(call: Enqueue, call_next: Callable[[], Awaitable[str]]) -> str:
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": call.queue,
            "messaging.message.id": call.job_id,
            "aioq.task.name": call.task,
        }
        with tracer.start_as_current_span(
            f"send {call.queue}", kind=trace.SpanKind.PRODUCER, attributes=attributes
        ) as span:
            propagate.inject(call.headers)
            job_id = await call_next()
            if job_id != call.job_id:  # a unique call found its job pending: nothing sent
                span.set_attribute("aioq.job.existing", job_id)
            return job_id

    async def process_span(ctx: Context, call_next: Callable[[], Awaitable[Any]]) -> Any:
        sent = propagate.extract(ctx.headers)
        origin = trace.get_current_span(sent).get_span_context()
        links = [trace.Link(origin)] if origin.is_valid else None
        attributes: dict[str, AttributeValue] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": ctx.queue,
            "messaging.message.id": ctx.job_id,
            "messaging.consumer.group.name": CONSUMER_GROUP,
            "messaging.client.id": ctx.worker_id,
            "aioq.task.name": ctx.task_name,
            "aioq.job.attempt": ctx.attempt,
        }
        with tracer.start_as_current_span(
            f"process {ctx.queue}",
            context=sent,
            kind=trace.SpanKind.CONSUMER,
            links=links,
            attributes=attributes,
        ):
            # The steps that follow this one in a workflow continue from here.
            propagate.inject(ctx.headers)
            return await call_next()

    app.enqueue_middleware(send_span)
    app.middleware(process_span)

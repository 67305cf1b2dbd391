"""Task options and their resolution: call > task > routing rule > app defaults.

One pure function (``resolve``) decides every effective option, so the
precedence rule lives in exactly one place; the producer (``App.options_for``),
the worker and the scheduler all go through it. ``CALL_FIELDS`` lists, once,
the options a single call may override and its message carries.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime

UNSET: Any = msgspec.UNSET

CALL_FIELDS = ("timeout", "result_ttl", "store_result", "retries", "priority")
"""The options one call can override, as its message carries them (``None`` on the
wire = not set by the call). The queue is not among them: a message names its
queue, always."""

MAX_PRIORITY = 9
"""Priorities run from 0 (the default) to 9 (most urgent)."""


class TaskOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Options a task declares, or a call overrides. ``UNSET`` means "not given here"."""

    queue: str | msgspec.UnsetType = msgspec.UNSET
    timeout: float | None | msgspec.UnsetType = msgspec.UNSET
    result_ttl: float | msgspec.UnsetType = msgspec.UNSET
    store_result: bool | msgspec.UnsetType = msgspec.UNSET
    retries: int | msgspec.UnsetType = msgspec.UNSET
    retry_backoff: float | msgspec.UnsetType = msgspec.UNSET
    retry_backoff_max: float | msgspec.UnsetType = msgspec.UNSET
    max_deliveries: int | msgspec.UnsetType = msgspec.UNSET
    priority: int | msgspec.UnsetType = msgspec.UNSET
    unique_for: float | None | msgspec.UnsetType = msgspec.UNSET
    max_result_bytes: int | None | msgspec.UnsetType = msgspec.UNSET

    def merged(self, over: TaskOptions) -> TaskOptions:
        """These options with every field that ``over`` sets replaced."""
        changes = {
            f: getattr(over, f)
            for f in self.__struct_fields__
            if getattr(over, f) is not msgspec.UNSET
        }
        return msgspec.structs.replace(self, **changes) if changes else self


class Effective(msgspec.Struct, frozen=True):
    """Fully resolved options of one attempt (nothing unset)."""

    queue: str
    timeout: float | None
    result_ttl: float
    store_result: bool
    retries: int = 0
    retry_backoff: float = 1.0
    retry_backoff_max: float = 600.0
    max_deliveries: int = 5
    priority: int = 0
    unique_for: float | None = None
    max_result_bytes: int | None = None
    """Largest encoded result stored; over it the job fails (``ResultTooLarge``)."""

    def backoff(self, retry: int, rand: float) -> float:
        """Seconds before retry number ``retry`` (1-based): exponential, capped at
        ``retry_backoff_max``, with full jitter (``rand`` uniform in [0, 1))."""
        ceiling = min(self.retry_backoff_max, self.retry_backoff * 2.0 ** (retry - 1))
        return float(ceiling * rand)


def _shown(value: object) -> str:
    """A bad value as a message shows it (a callable by what it is: a value was expected)."""
    if callable(value):
        return f"a callable ({value!r}): pass the value itself, not a function returning it"
    return repr(value)


def check_number(
    name: str,
    value: object,
    *,
    whole: bool = False,
    minimum: float = 0.0,
    positive: bool = True,
    optional: bool = False,
) -> None:
    """Raise ``ConfigurationError`` unless ``value`` is a finite number (an int
    with ``whole``) above 0 (``positive``) or at least ``minimum``; ``None`` is
    allowed with ``optional``. Booleans and strings are not numbers here."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        kind = "a whole number" if whole else "a number of seconds"
        raise ConfigurationError(f"{name} must be {kind}, got {_shown(value)}")
    if not (value > minimum if positive else value >= minimum) or not math.isfinite(value):
        bound = f"> {minimum:g}" if positive else f">= {minimum:g}"
        raise ConfigurationError(
            f"{name} must be a{' positive' if positive and not minimum else ''} "
            f"{'whole number' if whole else 'number'} {bound}, got {value!r}"
        )


def check_flag(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {_shown(value)}")


def check_queue(queue: object) -> None:
    if not isinstance(queue, str):
        raise ConfigurationError(f"queue must be a queue name (a str), got {_shown(queue)}")
    if not queue or "{" in queue or "}" in queue:
        raise ConfigurationError(
            f"queue name {queue!r} must be non-empty without braces "
            "(braces would break the Redis Cluster hash tags)"
        )


def validate(opts: TaskOptions) -> TaskOptions:
    """Reject option values that cannot work, with a message naming the option.

    Values are checked for their type too: ``msgspec.Struct`` does not check
    types on construction, and a ``queue=lambda: ...`` or ``timeout="30"``
    would otherwise surface much later as a raw ``TypeError``, or never.
    """
    unset = msgspec.UNSET
    if opts.queue is not unset:
        check_queue(opts.queue)
    if opts.timeout is not unset:
        check_number("timeout", opts.timeout, optional=True)
    if opts.result_ttl is not unset:
        check_number("result_ttl", opts.result_ttl)
    if opts.store_result is not unset:
        check_flag("store_result", opts.store_result)
    if opts.retries is not unset:
        check_number("retries", opts.retries, whole=True, positive=False)
    if opts.max_deliveries is not unset:
        check_number("max_deliveries", opts.max_deliveries, whole=True, minimum=1, positive=False)
    for name in ("retry_backoff", "retry_backoff_max"):
        if getattr(opts, name) is not unset:
            check_number(name, getattr(opts, name), positive=False)
    if opts.priority is not unset and (
        not isinstance(opts.priority, int)
        or isinstance(opts.priority, bool)
        or not 0 <= opts.priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"priority must be a whole number from 0 to {MAX_PRIORITY} "
            f"({MAX_PRIORITY} = most urgent), got {_shown(opts.priority)}"
        )
    if opts.unique_for is not unset:
        check_number("unique_for", opts.unique_for, optional=True)
    if opts.max_result_bytes is not unset:
        check_number("max_result_bytes", opts.max_result_bytes, whole=True, optional=True)
    return opts


def check_app(
    prefix: object,
    visibility_timeout: object,
    operation_timeout: object,
    max_message_bytes: object,
    dead_letter_maxlen: object,
    events_maxlen: object = 0,
) -> None:
    """The ``App`` settings that are not task options, checked the same way."""
    if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
        raise ConfigurationError(f"prefix must be a non-empty str without braces, got {prefix!r}")
    check_number("visibility_timeout", visibility_timeout)
    check_number("operation_timeout", operation_timeout)
    check_number("max_message_bytes", max_message_bytes, whole=True)
    check_number("dead_letter_maxlen", dead_letter_maxlen, whole=True)
    check_number("events_maxlen", events_maxlen, whole=True, positive=False)


def check_definition(
    name: object, retry_on: object, rate_limit: object, catch_up: object, cron: object, tz: object
) -> None:
    """``@app.task`` arguments that are not task options (``max_running`` is
    checked by ``TaskDef``)."""
    if name is not None and (not isinstance(name, str) or not name):
        raise ConfigurationError(f"name must be a non-empty str, got {_shown(name)}")
    classes = retry_on if isinstance(retry_on, tuple) else (retry_on,)
    if not all(isinstance(c, type) and issubclass(c, BaseException) for c in classes):
        raise ConfigurationError(
            f"retry_on must be an exception class or a tuple of them, got {_shown(retry_on)}"
        )
    if rate_limit is not None and not isinstance(rate_limit, str):
        raise ConfigurationError(f"rate_limit {rate_limit!r}: expected a str such as '100/s'")
    check_flag("catch_up", catch_up)
    for label, value in (("cron", cron), ("tz", tz)):
        if value is not None and not isinstance(value, str):
            raise ConfigurationError(f"{label} must be a str, got {_shown(value)}")


NOT_SET = TaskOptions()
"""No option set (a call without overrides, a task without a routing rule)."""


def resolve(
    app: Effective, task: TaskOptions, call: TaskOptions, rule: TaskOptions = NOT_SET
) -> Effective:
    """The effective options: what the call set, else what the task set, else what
    the routing rule for the task sets, else the app's."""
    merged = rule.merged(task).merged(call)
    return Effective(
        **{
            f: getattr(app, f) if getattr(merged, f) is msgspec.UNSET else getattr(merged, f)
            for f in Effective.__struct_fields__
        }
    )


def wire(call: TaskOptions) -> dict[str, Any]:
    """The per-call overrides a message carries (``None`` = not set by the call;
    the worker resolves it against the task and the app)."""
    return {f: None if getattr(call, f) is msgspec.UNSET else getattr(call, f) for f in CALL_FIELDS}


def unwire(values: Mapping[str, Any], queue: str | None = None) -> TaskOptions:
    """The call's options back from what a message or a signature carries (the
    inverse of ``wire``: ``None`` and missing fields are "not set")."""
    found = {f: values[f] for f in CALL_FIELDS if values.get(f) is not None}
    if queue is not None:
        found["queue"] = queue
    return TaskOptions(**found)


class When(msgspec.Struct, frozen=True):
    """A call's schedule: run ``delay_ms`` after Redis receives it, or at ``eta_ms``.

    A delay is relative: its due time is computed from Redis' clock by the script
    that stores the message, never from the sender's clock. An ``eta`` is an
    absolute instant and stays one.
    """

    delay_ms: int | None = None
    eta_ms: int | None = None

    @property
    def kind(self) -> str:
        """How the scripts read ``ms``: ``"delay"`` (relative) or ``"eta"`` (absolute)."""
        return "delay" if self.delay_ms is not None else "eta"

    @property
    def ms(self) -> int:
        """The delay in ms, or the eta in ms since the epoch."""
        value = self.delay_ms if self.delay_ms is not None else self.eta_ms
        assert value is not None
        return value


def make_when(delay: float | None, eta: datetime | None) -> When | None:
    """A call's schedule, checked; None for "now" (no delay, or a delay of 0).

    ``eta`` must be timezone-aware (a naive datetime is ambiguous across hosts).
    """
    if delay is not None and eta is not None:
        raise ConfigurationError("give either delay or eta, not both")
    if eta is not None:
        if not hasattr(eta, "timestamp") or eta.tzinfo is None or eta.utcoffset() is None:
            raise ConfigurationError(f"eta must be a timezone-aware datetime, got {_shown(eta)}")
        return When(eta_ms=int(eta.timestamp() * 1000))
    if delay is not None:
        check_number("delay", delay, positive=False)
        delay_ms = int(delay * 1000)
        return When(delay_ms=delay_ms) if delay_ms > 0 else None
    return None


_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PERIODS |= {"h": 3600.0, "hour": 3600.0, "d": 86400.0, "day": 86400.0}


class RateLimit(msgspec.Struct, frozen=True):
    """At most ``count`` starts per ``period`` seconds, evenly spaced."""

    count: int
    period: float

    @property
    def interval_us(self) -> int:
        """Microseconds between two starts: the period over the count, plus 2 %.

        The margin keeps clock jitter between the limiter's decision and the
        function's first line from ever squeezing ``count + 1`` starts into a
        window of one period.
        """
        return max(1, round(self.period / self.count * 1.02 * 1_000_000))

    def __str__(self) -> str:
        return f"{self.count}/{self.period:g}s"


def parse_rate(spec: str) -> RateLimit:
    """``"100/s"``, ``"30/m"``, ``"500/h"``, ``"10/d"`` (also ``"5/10s"``) → RateLimit."""
    count_text, sep, per = str(spec).replace(" ", "").partition("/")
    unit = per.lstrip("0123456789.")
    scale_text = per[: len(per) - len(unit)]
    unit = unit.lower()
    if unit not in _PERIODS:
        unit = unit.removesuffix("s")  # "seconds", "mins", "hours"
    try:
        count = int(count_text)
        scale = float(scale_text) if scale_text else 1.0
        period = scale * _PERIODS[unit]
    except (ValueError, KeyError):
        raise ConfigurationError(
            f"rate_limit {spec!r}: expected '<count>/<unit>' with unit s, m, h or d "
            "(e.g. '100/s', '30/m')"
        ) from None
    if not sep or count < 1 or not 0 < period < math.inf:
        raise ConfigurationError(f"rate_limit {spec!r}: count and period must be positive")
    return RateLimit(count, period)

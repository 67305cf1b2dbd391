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

    def backoff(self, retry: int, rand: float) -> float:
        """Seconds before retry number ``retry`` (1-based): exponential, capped at
        ``retry_backoff_max``, with full jitter (``rand`` uniform in [0, 1))."""
        ceiling = min(self.retry_backoff_max, self.retry_backoff * 2.0 ** (retry - 1))
        return float(ceiling * rand)


def validate(opts: TaskOptions) -> TaskOptions:
    """Reject option values that cannot work, with a message naming the option."""
    if isinstance(opts.queue, str) and (not opts.queue or "{" in opts.queue or "}" in opts.queue):
        raise ConfigurationError(f"queue name {opts.queue!r} must be non-empty without braces")
    if isinstance(opts.timeout, (int, float)) and not (0 < opts.timeout < math.inf):
        raise ConfigurationError(
            f"timeout must be a positive number of seconds, got {opts.timeout}"
        )
    for name in ("retries", "max_deliveries"):
        value = getattr(opts, name)
        if isinstance(value, int) and value < (0 if name == "retries" else 1):
            raise ConfigurationError(
                f"{name} must be a whole number >= {0 if name == 'retries' else 1}, got {value}"
            )
    for name in ("retry_backoff", "retry_backoff_max"):
        value = getattr(opts, name)
        if isinstance(value, (int, float)) and not (0 <= value < math.inf):
            raise ConfigurationError(f"{name} must be >= 0 seconds, got {value}")
    if isinstance(opts.result_ttl, (int, float)) and not (0 < opts.result_ttl < math.inf):
        raise ConfigurationError(f"result_ttl must be positive seconds, got {opts.result_ttl}")
    if opts.priority is not msgspec.UNSET and (
        not isinstance(opts.priority, int)
        or isinstance(opts.priority, bool)
        or not 0 <= opts.priority <= MAX_PRIORITY
    ):
        raise ConfigurationError(
            f"priority must be a whole number from 0 to {MAX_PRIORITY} "
            f"({MAX_PRIORITY} = most urgent), got {opts.priority!r}"
        )
    if isinstance(opts.unique_for, (int, float)) and not (0 < opts.unique_for < math.inf):
        raise ConfigurationError(f"unique_for must be positive seconds, got {opts.unique_for}")
    return opts


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
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise ConfigurationError("eta must be a timezone-aware datetime")
        return When(eta_ms=int(eta.timestamp() * 1000))
    if delay is not None:
        if not (0 <= delay < math.inf):
            raise ConfigurationError(f"delay must be >= 0 seconds, got {delay}")
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

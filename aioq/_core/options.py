"""Task options and their resolution: call > task > app defaults.

One pure function decides every effective option, so the precedence rule
lives in exactly one place.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import msgspec

from ..errors import ConfigurationError

UNSET: Any = msgspec.UNSET


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
    return opts


def resolve(app: Effective, task: TaskOptions, call: TaskOptions) -> Effective:
    """The effective options: what the call set, else what the task set, else the app's."""
    merged = task.merged(call)
    return Effective(
        **{
            f: getattr(app, f) if getattr(merged, f) is msgspec.UNSET else getattr(merged, f)
            for f in Effective.__struct_fields__
        }
    )


def wire(call: TaskOptions) -> dict[str, Any]:
    """The per-call overrides a message carries (``None`` = not set by the call;
    the worker resolves it against the task and the app)."""
    return {
        f: None if getattr(call, f) is msgspec.UNSET else getattr(call, f)
        for f in ("timeout", "result_ttl", "store_result", "retries")
    }


class When(msgspec.Struct, frozen=True):
    """A call's schedule: run after ``delay`` seconds, or at ``eta``."""

    delay: float | None = None
    eta: datetime | None = None


def due_ms(delay: float | None, eta: datetime | None, now_ms: int) -> int | None:
    """When a call should run, in ms since the epoch; None for "now".

    ``eta`` must be timezone-aware (a naive datetime is ambiguous across hosts).
    """
    if delay is not None and eta is not None:
        raise ConfigurationError("give either delay or eta, not both")
    if eta is not None:
        if eta.tzinfo is None or eta.utcoffset() is None:
            raise ConfigurationError("eta must be a timezone-aware datetime")
        return int(eta.timestamp() * 1000)
    if delay is not None:
        if not (0 <= delay < math.inf):
            raise ConfigurationError(f"delay must be >= 0 seconds, got {delay}")
        return now_ms + int(delay * 1000) if delay > 0 else None
    return None

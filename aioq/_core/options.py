"""Task options and their resolution: call > task > app defaults.

One pure function decides every effective option, so the precedence rule
lives in exactly one place.
"""

from __future__ import annotations

import math
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


def validate(opts: TaskOptions) -> TaskOptions:
    """Reject option values that cannot work, with a message naming the option."""
    if isinstance(opts.queue, str) and (not opts.queue or "{" in opts.queue or "}" in opts.queue):
        raise ConfigurationError(f"queue name {opts.queue!r} must be non-empty without braces")
    if isinstance(opts.timeout, (int, float)) and not (0 < opts.timeout < math.inf):
        raise ConfigurationError(
            f"timeout must be a positive number of seconds, got {opts.timeout}"
        )
    if isinstance(opts.result_ttl, (int, float)) and not (0 < opts.result_ttl < math.inf):
        raise ConfigurationError(f"result_ttl must be positive seconds, got {opts.result_ttl}")
    return opts


def resolve(app: Effective, task: TaskOptions, call: TaskOptions) -> Effective:
    """The effective options: what the call set, else what the task set, else the app's."""
    merged = task.merged(call)
    return Effective(
        queue=app.queue if merged.queue is msgspec.UNSET else merged.queue,
        timeout=app.timeout if merged.timeout is msgspec.UNSET else merged.timeout,
        result_ttl=app.result_ttl if merged.result_ttl is msgspec.UNSET else merged.result_ttl,
        store_result=(
            app.store_result if merged.store_result is msgspec.UNSET else merged.store_result
        ),
    )


def wire(call: TaskOptions) -> dict[str, Any]:
    """The per-call overrides a message carries (``None`` = not set by the call;
    the worker resolves it against the task and the app)."""
    return {
        f: None if getattr(call, f) is msgspec.UNSET else getattr(call, f)
        for f in ("timeout", "result_ttl", "store_result")
    }

"""A worker process's lifespan hooks: ``@app.on_worker_start`` before it reads
anything, ``@app.on_worker_stop`` after its last task ended and its last
completion was written.

What the start hooks return (mappings, merged) is ``ctx.state`` in every task
of that process. A start hook that raises stops the worker before it reads a
message (the stop hooks of the hooks that did start still run); a stop hook
that raises is logged and the others still run.
"""

from __future__ import annotations

import contextlib
import logging
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._core.context import NO_STATE
from .._core.hooks import merge_state

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from .._core.hooks import Hooks

log = logging.getLogger("aioq.worker")


@contextlib.asynccontextmanager
async def lifespan(hooks: Hooks) -> AsyncIterator[Mapping[str, Any]]:
    """Run the start hooks, yield the merged state, then run the stop hooks."""
    if not hooks.starts and not hooks.stops:
        yield NO_STATE
        return
    parts: list[tuple[object, object]] = []
    try:
        for hook, is_async in hooks.starts:
            value = await hook() if is_async else hook()  # type: ignore[misc]
            parts.append((hook, value))
        state = MappingProxyType(merge_state(parts))
    except BaseException:
        await _stop(hooks, MappingProxyType(merge_state(_mappings(parts))))
        raise
    try:
        yield state
    finally:
        await _stop(hooks, state)


def _mappings(parts: list[tuple[object, object]]) -> list[tuple[object, object]]:
    """What the hooks that started returned, without a bad return value or a
    duplicated key (merging them failed): the stop hooks still get the rest."""
    seen: set[object] = set()
    kept: list[tuple[object, object]] = []
    for hook, value in parts:
        if hasattr(value, "keys") and hasattr(value, "__getitem__"):
            fresh = {k: value[k] for k in value.keys() if k not in seen}
            seen.update(fresh)
            kept.append((hook, fresh))
    return kept


async def _stop(hooks: Hooks, state: Mapping[str, Any]) -> None:
    for hook, is_async, takes_state in hooks.stops:
        try:
            result = hook(state) if takes_state else hook()
            if is_async:
                await result  # type: ignore[misc]
        except Exception:
            log.exception("on_worker_stop hook %r failed; the others still run", hook)

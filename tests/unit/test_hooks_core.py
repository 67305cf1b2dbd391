"""Hooks as data: merging the worker state, checks, headers on the wire."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

import aioq
from aioq._core.context import Context
from aioq._core.hooks import Hooks, merge_state, run_middleware
from aioq._core.message import Message, decode_message, encode, new_message


def test_state_merges_mappings_in_order_and_refuses_clashes() -> None:
    assert merge_state([("a", {"x": 1}), ("b", None), ("c", {"y": 2})]) == {"x": 1, "y": 2}
    with pytest.raises(aioq.ConfigurationError, match=r"both set ctx.state\['x'\]"):
        merge_state([("a", {"x": 1}), ("b", {"x": 2})])
    with pytest.raises(aioq.ConfigurationError, match="returned list; return a mapping"):
        merge_state([("a", [1, 2])])


def test_stop_hooks_take_the_state_or_nothing() -> None:
    hooks = Hooks()
    hooks.add_stop(lambda: None)
    hooks.add_stop(lambda state: None)
    assert [takes for _, _, takes in hooks.stops] == [False, True]
    with pytest.raises(aioq.ConfigurationError, match="no argument or one"):
        hooks.add_stop(lambda a, b: None)


async def test_middleware_runs_outermost_first_with_the_same_context() -> None:
    order: list[str] = []

    def named(label: str) -> Any:
        async def mw(ctx: Context, call_next: Any) -> Any:
            order.append(f"{label}:{ctx.job_id}")
            return f"{label}({await call_next()})"

        return mw

    async def body() -> str:
        return "body"

    ctx = Context(app=None, job_id="j", task_name="t", queue="q", attempt=1, worker_id="w")  # type: ignore[arg-type]
    assert await run_middleware((named("a"), named("b")), ctx, body) == "a(b(body))"
    assert order == ["a:j", "b:j"]


def test_context_headers_are_a_copy_and_what_is_left_goes_on() -> None:
    sent = {"k": "v"}
    ctx = Context(
        app=None, job_id="j", task_name="t", queue="q", attempt=1, worker_id="w", headers=sent
    )  # type: ignore[arg-type]
    assert ctx.outgoing_headers() is sent  # untouched: the message's own
    ctx.headers["k"] = "changed"
    assert sent == {"k": "v"} and ctx.outgoing_headers() == {"k": "changed"}
    bare = Context(app=None, job_id="j", task_name="t", queue="q", attempt=1, worker_id="w")  # type: ignore[arg-type]
    assert bare.headers == {} and bare.outgoing_headers() is None


class _Before(msgspec.Struct, array_like=True, frozen=True):
    """The envelope as it was before ``headers`` was appended."""

    id: str
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_ms: int
    timeout: float | None = None
    result_ttl: float | None = None
    store_result: bool | None = None
    retries: int | None = None
    retry: int = 0
    cont: Any = None
    priority: int = 0
    reserved: bool = False
    waits: int = 0
    unique: str | None = None


def test_messages_without_headers_still_decode_and_headers_round_trip() -> None:
    old = encode(_Before("id", "task", "q", [1], {}, 5, unique="u"))
    msg = decode_message(old)
    assert msg.headers is None and msg.unique == "u" and msg.args == [1]
    _, payload = new_message("t", "q", [], {}, max_bytes=1 << 20, headers={"a": "b"})
    assert decode_message(payload).headers == {"a": "b"}
    _, plain = new_message("t", "q", [], {}, max_bytes=1 << 20, headers={})
    assert decode_message(plain).headers is None
    # the new fields (headers, unknown_since_ms) cost a byte each when unused
    same = encode(Message("id", "task", "q", [1], {}, 5, unique="u"))
    assert len(same) == len(old) + 2
    assert decode_message(old).unknown_since_ms == 0

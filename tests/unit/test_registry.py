"""Task definitions: context detection and argument conversion."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from aioq import Context
from aioq._core.options import TaskOptions
from aioq._core.registry import ArgumentError, Registry, TaskDef
from aioq.errors import ConfigurationError


@dataclasses.dataclass
class P:
    x: int


async def typed(
    ctx: Context, p: P, when: dt.datetime, *rest: int, flag: bool = False, **extra: str
) -> None: ...


def test_bind_converts_every_parameter_kind() -> None:
    td = TaskDef(typed, "typed", TaskOptions())
    assert td.wants_context and td.is_async
    args, kwargs = td.bind([{"x": 1}, dt.datetime(2030, 1, 1), 2, 3], {"flag": True, "k": "v"})
    assert args == [P(1), dt.datetime(2030, 1, 1), 2, 3]
    assert kwargs == {"flag": True, "k": "v"}


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ([{"x": "no"}, dt.datetime(2030, 1, 1)], {}, "argument 'p'"),
        ([{"x": 1}], {}, "missing a required argument: 'when'"),
        ([{"x": 1}, dt.datetime(2030, 1, 1), "s"], {}, "argument 'rest'"),
        ([{"x": 1}, dt.datetime(2030, 1, 1)], {"k": 5}, "argument 'extra'"),
    ],
)
def test_bind_reports_the_offending_parameter(
    args: list[Any], kwargs: dict[str, Any], match: str
) -> None:
    td = TaskDef(typed, "typed", TaskOptions())
    with pytest.raises(ArgumentError, match=match):
        td.bind(args, kwargs)


def test_context_is_inserted_where_declared() -> None:
    def middle(a: int, ctx: Context, b: int) -> tuple[int, object, int]:
        return a, ctx, b

    td = TaskDef(middle, "middle", TaskOptions())
    sentinel: Any = object()
    assert td.call(sentinel, [1, 2], {}) == (1, sentinel, 2)
    assert td.call(sentinel, [1], {"b": 2}) == (1, sentinel, 2)


def test_registry_refuses_two_functions_under_one_name() -> None:
    reg = Registry()

    def f() -> None: ...

    def g() -> None: ...

    reg.add(TaskDef(f, "same", TaskOptions()))
    reg.add(TaskDef(f, "same", TaskOptions()))  # the same function again is fine
    with pytest.raises(ConfigurationError):
        reg.add(TaskDef(g, "same", TaskOptions()))

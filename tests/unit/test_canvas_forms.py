"""Canvas as Celery writes it (issue 13): ``group(a, b, c)`` as well as
``group([a, b, c])`` or ``group(generator)``."""

from __future__ import annotations

import pytest

import aioq


@pytest.fixture
def app() -> aioq.App:
    return aioq.App(prefix="t")


def test_group_takes_members_as_arguments(app: aioq.App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    a, b, c = add.s(1, 1), add.s(2, 2), add.s(3, 3)
    assert aioq.group(a, b, c).members == [a, b, c]
    assert aioq.group([a, b, c]).members == [a, b, c]
    assert aioq.group(s for s in (a, b)).members == [a, b]
    assert aioq.group(a).members == [a]
    inner = aioq.chain(a, b)
    assert aioq.group(inner, c).members == [inner, c]
    made = aioq.group(a, b, on_error=c)
    assert made.members == [a, b]


def test_group_of_non_signatures_says_what_to_pass(app: aioq.App) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    with pytest.raises(aioq.ConfigurationError, match=r"add.s\(\.\.\.\)"):
        aioq.group(add, add.s(1, 2))  # type: ignore[call-overload]
    with pytest.raises(aioq.ConfigurationError, match="got int"):
        aioq.group([1, 2])  # type: ignore[list-item]

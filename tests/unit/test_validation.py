"""Every option is checked where it is written, with one clear
``ConfigurationError`` naming it (issue 13): not accepted silently, not a raw
``TypeError`` later."""

from __future__ import annotations

from typing import Any

import pytest

import aioq

BAD_TASK_OPTIONS: list[tuple[dict[str, Any], str]] = [
    ({"queue": lambda: "q"}, "queue must be a queue name.*got a callable"),
    ({"queue": 42}, "queue must be a queue name.*got 42"),
    ({"queue": "a{b}"}, "queue name 'a{b}'"),
    ({"timeout": "30"}, "timeout must be a number of seconds.*got '30'"),
    ({"timeout": True}, "timeout must be a number"),
    ({"timeout": -1}, "timeout must be a positive"),
    ({"result_ttl": lambda: 5}, "result_ttl must be a number.*got a callable"),
    ({"retries": 2.5}, "retries must be a whole number"),
    ({"retries": "3"}, "retries must be a whole number"),
    ({"max_deliveries": None}, "max_deliveries must be a whole number"),
    ({"retry_backoff": "1"}, "retry_backoff must be a number"),
    ({"store_result": "yes"}, "store_result must be True or False"),
    ({"priority": 10}, "priority must be a whole number from 0 to 9"),
    ({"priority": -1}, "priority must be a whole number from 0 to 9"),
    ({"priority": "5"}, "priority must be a whole number from 0 to 9"),
    ({"unique_for": "60"}, "unique_for must be a number"),
    ({"max_running": "5"}, "max_running must be a whole number"),
    ({"rate_limit": 5}, "rate_limit 5"),
    ({"name": 42}, "name must be a non-empty str"),
    ({"retry_on": ValueError}, None),  # one class is fine
    ({"retry_on": "ValueError"}, "retry_on must be an exception class or a tuple"),
    ({"catch_up": "no", "cron": "* * * * *"}, "catch_up must be True or False"),
]


@pytest.mark.parametrize(("options", "message"), BAD_TASK_OPTIONS)
def test_task_options_are_checked_at_definition(options: dict[str, Any], message: str) -> None:
    app = aioq.App(prefix="t")

    def fn() -> None: ...

    if message is None:
        app.task(**options)(fn)
        return
    with pytest.raises(aioq.ConfigurationError, match=message):
        app.task(**options)(fn)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prefix": 42}, "prefix must be"),
        ({"visibility_timeout": "60"}, "visibility_timeout must be a number"),
        ({"operation_timeout": -1}, "operation_timeout must be a positive"),
        ({"max_message_bytes": "1mb"}, "max_message_bytes must be a whole number"),
        ({"dead_letter_maxlen": 1.5}, "dead_letter_maxlen must be a whole number"),
        ({"default_queue": lambda: "q"}, "queue must be a queue name.*got a callable"),
        ({"retries": -1}, "retries must be a whole number >= 0"),
    ],
)
def test_app_options_are_checked(options: dict[str, Any], message: str) -> None:
    with pytest.raises(aioq.ConfigurationError, match=message):
        aioq.App(**options)


def test_call_options_are_checked() -> None:
    app = aioq.App(prefix="t")

    @app.task
    def fn() -> None: ...

    with pytest.raises(aioq.ConfigurationError, match="queue must be a queue name"):
        fn.with_options(queue=42)  # type: ignore[arg-type]
    with pytest.raises(aioq.ConfigurationError, match="timeout must be a number"):
        fn.with_options(timeout="30")  # type: ignore[arg-type]
    with pytest.raises(aioq.ConfigurationError, match="priority"):
        fn.with_options(priority=99)
    with pytest.raises(aioq.ConfigurationError, match="route 'x': queue must be"):
        app.routes({"x": {"queue": 42}})  # type: ignore[dict-item]


async def test_bad_arguments_at_kiq_name_the_argument() -> None:
    app = aioq.App(prefix="t", url="redis://127.0.0.1:1/0")  # never reached: checked before

    @app.task
    async def add(x: int, y: int = 0) -> int:
        return x + y

    with pytest.raises(aioq.ArgumentError, match="unexpected keyword argument 'z'"):
        await add.kiq(1, z=2)  # type: ignore[call-arg]
    with pytest.raises(aioq.ArgumentError, match="missing a required argument: 'x'"):
        await add.kiq()  # type: ignore[call-arg]
    with pytest.raises(aioq.ArgumentError, match="too many positional"):
        await add.kiq(1, 2, 3)  # type: ignore[call-arg]
    with pytest.raises(aioq.ArgumentError, match=r"argument 'y' cannot be sent.*object"):
        await add.kiq(1, object())  # type: ignore[arg-type]
    with pytest.raises(aioq.ArgumentError, match=r"argument 'x' cannot be sent.*serialize ints"):
        await add.kiq(2**70)
    with pytest.raises(aioq.ArgumentError, match=r"argument 'y' cannot be sent"):
        await add.kiq(1, y=object())  # type: ignore[arg-type]
    with pytest.raises(aioq.ArgumentError, match=r"argument 1 cannot be sent"):
        await app.send("by.name", args=[1, object()])
    with pytest.raises(TypeError):  # still a TypeError, as before
        await add.kiq(1, object())  # type: ignore[arg-type]


def test_argument_error_is_public() -> None:
    assert issubclass(aioq.ArgumentError, aioq.AioqError)
    assert issubclass(aioq.ArgumentError, TypeError)


def test_delay_eta_and_route_targets_are_checked() -> None:
    app = aioq.App(prefix="t")

    @app.task
    async def fn() -> None: ...

    with pytest.raises(aioq.ConfigurationError, match="delay must be a number of seconds.*'5'"):
        fn.with_options(delay="5")  # type: ignore[arg-type]
    with pytest.raises(aioq.ConfigurationError, match="delay must be.*callable"):
        fn.with_options(delay=lambda: 1)  # type: ignore[arg-type]
    with pytest.raises(aioq.ConfigurationError, match="eta must be a timezone-aware datetime"):
        fn.with_options(eta="2030-01-01")  # type: ignore[arg-type]
    with pytest.raises(aioq.ConfigurationError, match="countdown|delay must be"):
        fn.apply_async(countdown="10")  # type: ignore[arg-type]
    with pytest.raises(aioq.ConfigurationError, match="route 'x'.*a queue name or a dict"):
        app.routes({"x": lambda: "q"})  # type: ignore[dict-item]

"""Options resolve call > task > app, and bad values are refused."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioq._core.options import Effective, TaskOptions, resolve, validate, wire
from aioq.errors import ConfigurationError

APP = Effective(queue="default", timeout=None, result_ttl=100.0, store_result=True)

maybe_queue = st.sampled_from([msgspec.UNSET, "a", "b"])
maybe_ttl = st.sampled_from([msgspec.UNSET, 5.0, 7.0])


@given(tq=maybe_queue, cq=maybe_queue, tt=maybe_ttl, ct=maybe_ttl)
def test_precedence(tq, cq, tt, ct) -> None:  # type: ignore[no-untyped-def]
    eff = resolve(APP, TaskOptions(queue=tq, result_ttl=tt), TaskOptions(queue=cq, result_ttl=ct))
    assert eff.queue == (
        cq if cq is not msgspec.UNSET else tq if tq is not msgspec.UNSET else "default"
    )
    assert eff.result_ttl == (
        ct if ct is not msgspec.UNSET else tt if tt is not msgspec.UNSET else 100.0
    )


def test_explicit_none_timeout_overrides_a_task_timeout() -> None:
    eff = resolve(APP, TaskOptions(timeout=5.0), TaskOptions(timeout=None))
    assert eff.timeout is None


def test_wire_carries_only_call_overrides() -> None:
    assert wire(TaskOptions()) == {
        "timeout": None,
        "result_ttl": None,
        "store_result": None,
        "retries": None,
        "priority": None,
    }
    assert wire(TaskOptions(timeout=3.0, store_result=False, retries=2)) == {
        "timeout": 3.0,
        "result_ttl": None,
        "store_result": False,
        "retries": 2,
        "priority": None,
    }


@given(
    retry=st.integers(1, 60),
    rand=st.floats(0, 0.999999),
    base=st.floats(0.01, 10),
    cap=st.floats(0.1, 1000),
)
def test_backoff_is_bounded(retry: int, rand: float, base: float, cap: float) -> None:
    eff = Effective("q", None, 1.0, True, retry_backoff=base, retry_backoff_max=cap)
    delay = eff.backoff(retry, rand)
    assert 0 <= delay <= min(cap, base * 2 ** (retry - 1)) + 1e-9


@pytest.mark.parametrize(
    "bad",
    [
        TaskOptions(queue=""),
        TaskOptions(queue="a{b}"),
        TaskOptions(timeout=0),
        TaskOptions(timeout=-1.0),
        TaskOptions(result_ttl=0.0),
        TaskOptions(timeout=float("inf")),
    ],
)
def test_validate_rejects(bad: TaskOptions) -> None:
    with pytest.raises(ConfigurationError):
        validate(bad)


def test_rate_limits_parse_and_space_starts() -> None:
    from aioq._core.options import parse_rate

    assert parse_rate("100/s") == parse_rate("100/sec") == parse_rate("100 / second")
    assert parse_rate("30/m").period == 60.0
    assert parse_rate("500/h").period == 3600.0
    assert parse_rate("5/10s").period == 10.0
    assert parse_rate("10/d").period == 86400.0
    # 20/s: one start every 50 ms, plus the 2 % margin
    assert parse_rate("20/s").interval_us == 51_000
    for bad in ("100", "0/s", "-1/s", "x/s", "10/fortnight", "10/0s"):
        with pytest.raises(ConfigurationError, match="rate_limit"):
            parse_rate(bad)


def test_priority_and_unique_for_are_checked() -> None:
    assert validate(TaskOptions(priority=9)).priority == 9
    for bad in (10, -1, 2.5, True, "9"):
        with pytest.raises(ConfigurationError, match="priority"):
            validate(TaskOptions(priority=bad))
    with pytest.raises(ConfigurationError, match="unique_for"):
        validate(TaskOptions(unique_for=-1.0))


PRECEDENCE_FIELDS = {
    # field: (app, rule, task, call)
    "result_ttl": (100.0, 50.0, 5.0, 7.0),
    "timeout": (None, 30.0, 2.0, 3.0),
    "retries": (0, 4, 2, 1),
    "priority": (0, 3, 5, 9),
    "queue": ("default", "ruled", "tasks", "called"),
}


@pytest.mark.parametrize("field", sorted(PRECEDENCE_FIELDS))
@pytest.mark.parametrize("rule_sets", [False, True])
@pytest.mark.parametrize("task_sets", [False, True])
@pytest.mark.parametrize("call_sets", [False, True])
def test_precedence_table_call_task_rule_app(
    field: str, rule_sets: bool, task_sets: bool, call_sets: bool
) -> None:
    app_value, rule_value, task_value, call_value = PRECEDENCE_FIELDS[field]
    app = msgspec.structs.replace(APP, **{field: app_value})
    rule = TaskOptions(**{field: rule_value}) if rule_sets else TaskOptions()
    task = TaskOptions(**{field: task_value}) if task_sets else TaskOptions()
    call = TaskOptions(**{field: call_value}) if call_sets else TaskOptions()
    expected = (
        call_value
        if call_sets
        else task_value
        if task_sets
        else rule_value
        if rule_sets
        else app_value
    )
    assert getattr(resolve(app, task, call, rule), field) == expected


def test_an_app_resolves_every_send_in_one_place() -> None:
    """Producer, worker and scheduler ask the app, which asks ``resolve``."""
    import aioq

    app = aioq.App("redis://127.0.0.1:1/0", result_ttl=100.0, retries=1)
    app.routes({"reports.*": {"queue": "reports", "priority": 3}})

    @app.task(name="reports.daily", result_ttl=5.0, priority=5)
    async def daily() -> None: ...

    @app.task(name="reports.weekly")
    async def weekly() -> None: ...

    eff = app.options_for("reports.daily", TaskOptions(retries=4))
    assert (eff.queue, eff.priority, eff.result_ttl, eff.retries) == ("reports", 5, 5.0, 4)
    eff = app.options_for("reports.weekly")
    assert (eff.queue, eff.priority, eff.result_ttl, eff.retries) == ("reports", 3, 100.0, 1)
    eff = app.options_for("not.registered", TaskOptions(queue="q", result_ttl=9.0))
    assert (eff.queue, eff.priority, eff.result_ttl) == ("q", 0, 9.0)
    assert app.placement("reports.daily") == ("reports", 5)
    assert daily.with_options(priority=1).priority == 1


def test_the_per_call_fields_are_listed_once() -> None:
    from aioq._core.options import CALL_FIELDS

    assert set(wire(TaskOptions())) == set(CALL_FIELDS)
    assert set(CALL_FIELDS) <= set(TaskOptions.__struct_fields__)

"""When ticks fall: ``every=``, cron in a time zone (DST included), and what a
scheduler fires after a gap (``upcoming``)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioq._core.schedule import Schedule, latest_fire, next_fire
from aioq._worker.scheduler import MISFIRE_GRACE, stamp, upcoming
from aioq.errors import ConfigurationError

NY = "America/New_York"
GRACE_MS = round(MISFIRE_GRACE * 1000)


def ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso).timestamp() * 1000)


def local(t: int, tz: str) -> str:
    return datetime.fromtimestamp(t / 1000, ZoneInfo(tz)).isoformat()


def ticks(s: Schedule, after: str, n: int) -> list[str]:
    out, t = [], ms(after)
    for _ in range(n):
        t = next_fire(s, t)
        out.append(local(t, s.tz))
    return out


def cron(expr: str, tz: str = "UTC", catch_up: bool = False) -> Schedule:
    return Schedule(name="s", task="t", cron=expr, tz=tz, catch_up=catch_up)


def every(seconds: float, catch_up: bool = False) -> Schedule:
    return Schedule(name="s", task="t", every=seconds, catch_up=catch_up)


def test_every_ticks_are_multiples_since_the_epoch() -> None:
    s = every(30.0)
    assert next_fire(s, 1_000) == 30_000
    assert next_fire(s, 30_000) == 60_000  # strictly after
    assert latest_fire(s, 30_000) == 30_000  # at or before
    assert latest_fire(s, 59_999) == 30_000
    quarter = every(0.25)
    assert next_fire(quarter, 1_000) == 1_250
    assert latest_fire(quarter, 1_249) == 1_000


def test_cron_in_asia_seoul() -> None:
    s = cron("0 9 * * *", "Asia/Seoul")  # 09:00 in Seoul = 00:00 UTC (no DST)
    assert next_fire(s, ms("2024-01-01T00:00:00+00:00")) == ms("2024-01-02T00:00:00+00:00")
    assert latest_fire(s, ms("2024-01-01T00:00:00+00:00")) == ms("2024-01-01T00:00:00+00:00")
    assert ticks(s, "2024-06-30T12:00:00+00:00", 2) == [
        "2024-07-01T09:00:00+09:00",
        "2024-07-02T09:00:00+09:00",
    ]


def test_utc_is_the_default_zone() -> None:
    s = cron("0 9 * * *")
    assert next_fire(s, ms("2024-01-01T10:00:00+00:00")) == ms("2024-01-02T09:00:00+00:00")


def test_new_york_spring_forward() -> None:
    # 2024-03-10: clocks jump from 02:00 EST to 03:00 EDT.
    assert ticks(cron("30 2 * * *", NY), "2024-03-09T12:00:00-05:00", 2) == [
        "2024-03-10T03:00:00-04:00",  # 02:30 does not exist that day: it runs at 03:00
        "2024-03-11T02:30:00-04:00",
    ]
    assert ticks(cron("0 * * * *", NY), "2024-03-10T00:30:00-05:00", 3) == [
        "2024-03-10T01:00:00-05:00",
        "2024-03-10T03:00:00-04:00",  # one real hour later: there is no 02:00
        "2024-03-10T04:00:00-04:00",
    ]


def test_new_york_fall_back() -> None:
    # 2024-11-03: clocks go back from 02:00 EDT to 01:00 EST; 01:xx happens twice.
    assert ticks(cron("30 1 * * *", NY), "2024-11-02T12:00:00-04:00", 2) == [
        "2024-11-03T01:30:00-04:00",  # a fixed time runs once, the first time
        "2024-11-04T01:30:00-05:00",
    ]
    assert ticks(cron("0 * * * *", NY), "2024-11-03T00:30:00-04:00", 3) == [
        "2024-11-03T01:00:00-04:00",
        "2024-11-03T01:00:00-05:00",  # hourly runs in both copies of the hour
        "2024-11-03T02:00:00-05:00",
    ]
    hourly = cron("0 * * * *", NY)
    at = ms("2024-11-03T01:30:00-05:00")
    assert local(latest_fire(hourly, at), NY) == "2024-11-03T01:00:00-05:00"


SCHEDULES = [
    cron("* * * * *"),
    cron("*/5 * * * *", "Asia/Seoul"),
    cron("0 * * * *", NY),
    cron("30 1 * * *", NY),
    cron("30 2 * * *", NY),
    cron("*/30 1-3 * * *", NY),
    cron("0 0 1 * *", "Europe/London"),
    every(0.25),
    every(7.0),
]
# 2024-03-01 .. 2024-12-01: both of New York's and London's DST changes.
instants = st.integers(min_value=ms("2024-03-01T00:00:00+00:00"), max_value=ms("2024-12-01"))


@given(s=st.sampled_from(SCHEDULES), t=instants)
def test_latest_and_next_bracket_every_instant(s: Schedule, t: int) -> None:
    before, after = latest_fire(s, t), next_fire(s, t)
    assert before <= t < after
    assert next_fire(s, before) == after  # no tick in between the two
    assert latest_fire(s, after) == after


def test_a_tick_within_the_grace_still_fires() -> None:
    s = every(1.0)
    assert upcoming(s, 10_000, 10_000) == (10_000, False)
    assert upcoming(s, 10_000, 10_000 + GRACE_MS - 1) == (10_000, False)


def test_missed_ticks_are_skipped_without_catch_up() -> None:
    s = every(1.0)
    now = 20_500
    tick, missed = upcoming(s, 10_000, now)
    assert missed
    assert tick == next_fire(s, now - GRACE_MS)  # ticks older than the grace are gone
    assert now - GRACE_MS < tick


def test_missed_ticks_fire_once_with_catch_up() -> None:
    s = cron("0 * * * *", catch_up=True)
    now = ms("2024-05-01T10:30:00+00:00")
    tick, missed = upcoming(s, ms("2024-05-01T06:00:00+00:00"), now)
    assert missed
    assert tick == ms("2024-05-01T10:00:00+00:00")  # the latest missed tick, once
    assert upcoming(s, next_fire(s, tick), now) == (ms("2024-05-01T11:00:00+00:00"), False)


def test_stamps_are_in_the_schedules_zone() -> None:
    assert stamp(ms("2024-01-01T00:00:00+00:00"), "Asia/Seoul") == "2024-01-01T09:00:00+09:00"
    assert stamp(1_250, "UTC") == "1970-01-01T00:00:01.250+00:00"


def test_bad_schedules_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="either cron= or every="):
        Schedule(name="s", task="t")
    with pytest.raises(ConfigurationError, match="time zone"):
        cron("* * * * *", "Mars/Olympus")
    with pytest.raises(ConfigurationError, match="cron"):
        cron("61 * * * *")

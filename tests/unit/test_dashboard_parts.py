"""The dashboard's pure parts: throughput from read-model samples, CSRF tokens,
and which hosts the CLI calls loopback."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

pytest.importorskip("starlette")

from aioq._dashcli import loopback
from aioq.dashboard import csrf
from aioq.dashboard.history import History
from aioq.status import QueueStatus, Status, WorkerStatus


def status(t: float, delivered: dict[str, int], processed: dict[str, int]) -> Status:
    return Status(
        queues=[QueueStatus(name=q, delivered=n) for q, n in delivered.items()],
        workers=[
            WorkerStatus(
                id=w,
                host="h",
                pid=1,
                queues=["a"],
                concurrency=1,
                running=0,
                processed=n,
                failed=0,
                started_at=None,
                last_seen_s=0.0,
                version="0",
            )
            for w, n in processed.items()
        ],
        at=datetime.fromtimestamp(t, tz=UTC),
    )


def test_rates_between_samples() -> None:
    h = History(window_s=60, min_step_s=1)
    h.add(status(100, {"a": 0, "b": 10}, {}))
    h.add(status(100.5, {"a": 99, "b": 99}, {}))  # too soon: not kept
    h.add(status(102, {"a": 20, "b": 10, "c": 7}, {}))  # c is new: no rate yet
    h.add(status(104, {"a": 30, "b": 14, "c": 9}, {}))
    assert h.series() == {
        "t": [102.0, 104.0],
        "total": [10.0, 8.0],
        "queues": {"a": [10.0, 5.0], "b": [0.0, 2.0], "c": [0.0, 1.0]},
    }


def test_a_reset_counter_and_the_window() -> None:
    h = History(window_s=10, min_step_s=1)
    h.add(status(0, {"a": 50}, {}))
    h.add(status(5, {"a": 5}, {}))  # a recreated group: no negative rate
    h.add(status(20, {"a": 35}, {}))  # the first two fall out of the window
    h.add(status(22, {"a": 45}, {}))
    assert h.series() == {"t": [22.0], "total": [5.0], "queues": {"a": [5.0]}}


def test_csrf_tokens() -> None:
    secret = b"k" * 32
    token = csrf.mint(secret)
    assert csrf.valid(secret, token) and csrf.accepted(secret, token, token)
    assert not csrf.valid(b"other" * 8, token)
    assert not csrf.accepted(secret, token, csrf.mint(secret))  # another valid token
    assert not csrf.accepted(secret, token, None)
    forged = token.split(".")[0] + ".0000"
    assert not csrf.accepted(secret, forged, forged)
    assert not csrf.valid(secret, None) and not csrf.valid(secret, "no-dot")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_loopback(host: str, expected: bool) -> None:
    assert loopback(host) is expected

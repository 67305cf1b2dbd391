"""The wire format round-trips, and stays compact."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioq._core.message import (
    NIL,
    ErrorInfo,
    Message,
    Outcome,
    decode_message,
    decode_outcome,
    decode_value,
    encode,
    new_message,
)
from aioq.errors import MessageTooLarge

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.text()
    | st.binary()
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(
    args=st.lists(plain, max_size=5),
    kwargs=st.dictionaries(st.text(), plain, max_size=3),
    timeout=st.none() | st.floats(0.1, 1e6),
    store=st.none() | st.booleans(),
)
def test_message_round_trip(
    args: list[Any], kwargs: dict[str, Any], timeout: float | None, store: bool | None
) -> None:
    msg = Message("id", "task", "q", args, kwargs, 123, timeout, None, store)
    assert decode_message(encode(msg)) == msg


def test_new_message_refuses_oversized_payloads() -> None:
    job_id, payload = new_message("t", "q", [1, 2], {}, max_bytes=1000)
    assert len(job_id) == 32 and decode_message(payload).args == [1, 2]
    with pytest.raises(MessageTooLarge, match="over max_message_bytes=100"):
        new_message("t", "q", ["x" * 200], {}, max_bytes=100)


def test_outcome_carries_raw_result_and_error() -> None:
    ok = Outcome("succeeded", 5, result=msgspec.Raw(encode({"a": [1, 2]})))
    back = decode_outcome(encode(ok))
    assert decode_value(back.result) == {"a": [1, 2]}
    failed = decode_outcome(encode(Outcome("failed", 6, error=ErrorInfo("E", "m", "tb"))))
    assert failed.error == ErrorInfo("E", "m", "tb") and bytes(failed.result) == bytes(NIL)


def test_decode_value_converts_to_the_declared_type() -> None:
    when = dt.datetime(2030, 1, 2, tzinfo=dt.UTC)
    ident = uuid.uuid4()
    assert decode_value(encode(ident), uuid.UUID) == ident
    assert decode_value(encode(when), dt.datetime) == when
    assert decode_value(encode([1, 2]), tuple[int, int]) == (1, 2)

    class NotMsgspec:  # a type msgspec cannot describe falls back to plain decoding
        pass

    assert decode_value(encode({"x": 1}), NotMsgspec) == {"x": 1}


def test_new_message_carries_every_call_option() -> None:
    _, payload = new_message(
        "t",
        "q",
        [],
        {},
        timeout=1.5,
        result_ttl=9.0,
        store_result=False,
        retries=4,
        max_bytes=1000,
    )
    msg = decode_message(payload)
    assert (msg.timeout, msg.result_ttl, msg.store_result, msg.retries, msg.retry) == (
        1.5,
        9.0,
        False,
        4,
        0,
    )

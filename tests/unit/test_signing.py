"""Signed envelopes: the first key signs, every key verifies, nothing else passes."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aioq import App, ConfigurationError, MessageTooLarge
from aioq._core.message import Message, decode_message, encode, new_message, open_message, pack
from aioq._core.signing import HEADER, BadSignature, Signer, is_signed

OLD = "old-key-0123456789abcdef"
NEW = b"new-key-\x00\xff0123456789abcdef"


def payload(signer: Signer | None, args: list[object] | None = None) -> bytes:
    _, data = new_message("t", "q", args or [1, "x"], {"k": 2}, max_bytes=1 << 20, signer=signer)
    return data


def test_signed_payload_opens_with_the_signing_key_only() -> None:
    signer = Signer([OLD])
    data = payload(signer)
    assert is_signed(data) and len(data) == len(payload(None)) + HEADER
    msg = open_message(data, signer)
    assert (msg.task, msg.args, msg.kwargs) == ("t", [1, "x"], {"k": 2})
    with pytest.raises(BadSignature, match="no signing key matches"):
        open_message(data, Signer([NEW]))


@given(st.binary(max_size=200), st.integers(0, 10_000))
def test_any_altered_byte_is_refused(body: bytes, where: int) -> None:
    signer = Signer([OLD])
    data = bytearray(signer.sign(body))
    index = 2 + where % (len(data) - 2)  # past the magic: digest or message
    data[index] ^= 0x01
    with pytest.raises(BadSignature):
        signer.verify(bytes(data))
    assert bytes(signer.verify(signer.sign(body))) == body


def test_rotation_new_key_signs_old_key_still_verifies() -> None:
    before, during, after = Signer([OLD]), Signer([NEW, OLD]), Signer([NEW])
    old_msg, new_msg = payload(before), payload(during)
    assert open_message(old_msg, during).args == open_message(new_msg, during).args
    assert open_message(new_msg, after).task == "t"  # signed with NEW
    with pytest.raises(BadSignature):
        open_message(old_msg, after)  # OLD dropped: its messages no longer run
    with pytest.raises(BadSignature):
        open_message(new_msg, before)  # verifiers learn NEW before any signer uses it


def test_unsigned_and_truncated_payloads_are_refused() -> None:
    signer = Signer([OLD])
    with pytest.raises(BadSignature, match="not signed"):
        open_message(payload(None), signer)
    with pytest.raises(BadSignature, match="truncated"):
        signer.verify(payload(signer)[: HEADER - 1])
    # an app without keys runs both, as it always ran whatever was in its Redis
    plain, signed = open_message(payload(None), None), open_message(payload(signer), None)
    assert (plain.task, plain.args, plain.kwargs) == (signed.task, signed.args, signed.kwargs)


def test_display_decoding_strips_the_signature() -> None:
    msg = Message("id", "t", "q", [1], {}, 5)
    assert decode_message(pack(msg, Signer([OLD]))) == msg == decode_message(encode(msg))


def test_size_cap_counts_the_signature() -> None:
    plain = len(payload(None))
    new_message("t", "q", [1, "x"], {"k": 2}, max_bytes=plain)
    with pytest.raises(MessageTooLarge):
        new_message("t", "q", [1, "x"], {"k": 2}, max_bytes=plain, signer=Signer([OLD]))


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ("a-single-key-string-not-a-list", "non-empty list"),
        (b"a-single-key-bytes-not-a-list!", "non-empty list"),
        (["short"], "key 0 is 5 bytes; use at least 16"),
        ([OLD, 12345], "key 1 must be str or bytes"),
    ],
)
def test_bad_keys_are_configuration_errors(keys: object, error: str) -> None:
    with pytest.raises(ConfigurationError, match=error):
        App("redis://127.0.0.1:1", signing_keys=keys)  # type: ignore[arg-type]


def test_keys_never_show_in_repr() -> None:
    signer = App("redis://127.0.0.1:1", signing_keys=[OLD, NEW]).signer
    assert repr(signer) == "<Signer keys=2>" and App("redis://127.0.0.1:1").signer is None


def test_garbage_after_a_good_signature_is_still_a_decode_error() -> None:
    signer = Signer([OLD])
    with pytest.raises(msgspec.DecodeError):
        open_message(signer.sign(b"\x93not a message"), signer)

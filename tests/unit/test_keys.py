"""Every key of one queue lands in one Redis Cluster slot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aioq._transport.keys import Keyspace


def crc16(data: bytes) -> int:
    """CRC16-CCITT (XModem), as Redis Cluster uses for key slots."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot(key: str) -> int:
    raw = key.encode()
    start = raw.find(b"{")
    if start != -1:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16(raw) % 16384


def test_crc16_matches_the_cluster_spec_example() -> None:
    assert crc16(b"123456789") == 0x31C3


names = st.text(
    alphabet=st.characters(blacklist_characters="{}", blacklist_categories=("Cs",)),
    min_size=1,
    max_size=30,
)


@given(prefix=names, queue=names)
def test_queue_keys_share_a_slot(prefix: str, queue: str) -> None:
    keys = Keyspace(prefix).queue_keys(queue)
    assert len({slot(k) for k in keys}) == 1
    assert all(k.startswith(prefix + ":") for k in keys)


def test_key_layout() -> None:
    ks = Keyspace("aioq")
    assert ks.stream("default") == "aioq:{default}:stream"
    assert ks.dead("default") == "aioq:{default}:dead"
    assert ks.job("abc") == "aioq:job:abc"

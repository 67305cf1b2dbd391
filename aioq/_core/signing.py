"""Signed envelopes: HMAC-SHA256 over the encoded message (``App(signing_keys=[…])``).

A signed payload is the encoded message behind a 34-byte header::

    0xC1 | 0x01 (format version) | HMAC-SHA256(key, message) (32 bytes) | message

``0xC1`` is the one byte msgpack never uses, so a signed payload can never be
mistaken for an unsigned message, nor an unsigned one for a signed message. The
first key signs; every key verifies, so keys rotate without a flag day (add the new
key second everywhere, then move it first, then drop the old one). The digest
covers every byte of the encoded message, fields appended later (trace context)
included. Lua scripts move payloads between streams, delayed sets and dead letters
verbatim, so a signature survives retries, delays and re-drives.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import TYPE_CHECKING

from ..errors import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["HEADER", "MIN_KEY_BYTES", "BadSignature", "Signer", "is_signed", "unsigned"]

MAGIC = b"\xc1\x01"
"""Never a msgpack value's first byte (0xC1), then the format version."""
DIGEST_BYTES = 32
HEADER = len(MAGIC) + DIGEST_BYTES
MIN_KEY_BYTES = 16
"""Shorter keys are refused: an HMAC is only as strong as its key."""


class BadSignature(Exception):
    """A payload that no signing key vouches for (the worker dead-letters it)."""


def is_signed(data: bytes) -> bool:
    return data[:2] == MAGIC


def unsigned(data: bytes) -> bytes | memoryview:
    """The message inside a payload, signature stripped **unchecked** (for display:
    dead letters, job listings; and for an app without keys, which trusts every
    writer of its Redis as it always did)."""
    return memoryview(data)[HEADER:] if is_signed(data) else data


class Signer:
    """Signs with the first key, verifies with any of them."""

    __slots__ = ("_macs",)

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, (str, bytes)) or not keys:
            raise ConfigurationError(
                "signing_keys must be a non-empty list of keys (str or bytes), "
                f"the first one signing, got {keys!r:.40}"
            )
        found: list[bytes] = []
        for index, key in enumerate(keys):
            if not isinstance(key, (str, bytes)):
                raise ConfigurationError(
                    f"signing key {index} must be str or bytes, got {type(key).__name__}"
                )
            raw = key.encode() if isinstance(key, str) else bytes(key)
            if len(raw) < MIN_KEY_BYTES:
                raise ConfigurationError(
                    f"signing key {index} is {len(raw)} bytes; use at least {MIN_KEY_BYTES} "
                    "random bytes (e.g. secrets.token_hex(32))"
                )
            found.append(raw)
        # Keyed once: copying a keyed HMAC skips the key schedule (1.0 µs a message
        # instead of 1.6 µs for hmac.digest with the key).
        self._macs = tuple(hmac.new(raw, digestmod=hashlib.sha256) for raw in found)

    def __repr__(self) -> str:
        return f"<Signer keys={len(self._macs)}>"  # never the keys themselves

    def _digest(self, index: int, message: bytes | memoryview) -> bytes:
        mac = self._macs[index].copy()
        mac.update(message)
        return mac.digest()

    def sign(self, message: bytes) -> bytes:
        """The signed payload of an encoded message."""
        return MAGIC + self._digest(0, message) + message

    def verify(self, data: bytes) -> memoryview:
        """The encoded message inside a signed payload; ``BadSignature`` (saying why)
        if it is unsigned, truncated, or no key's digest matches."""
        if not is_signed(data):
            raise BadSignature("bad signature: the message is not signed")
        if len(data) < HEADER:
            raise BadSignature("bad signature: the signed message is truncated")
        view = memoryview(data)
        digest, message = view[len(MAGIC) : HEADER], view[HEADER:]
        for index in range(len(self._macs)):
            if hmac.compare_digest(self._digest(index, message), digest):
                return message
        raise BadSignature(
            "bad signature: no signing key matches (forged, altered, or signed with a key "
            "this app does not have)"
        )

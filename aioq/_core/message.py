"""The wire format: the message envelope, a job's outcome, and their codecs.

Everything that crosses Redis is msgpack encoded by msgspec. Structs are
``array_like`` so field names are not repeated in every message; new fields are
only ever appended, with defaults, so old messages keep decoding.
"""

from __future__ import annotations

import enum
import hashlib
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import ArgumentError, ConfigurationError, MessageTooLarge
from .canvas import Cont, Launch
from .signing import unsigned

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .signing import Signer

__all__ = [
    "ErrorInfo",
    "JobState",
    "Message",
    "Outcome",
    "decode_message",
    "decode_outcome",
    "encode",
    "now_ms",
    "open_message",
    "pack",
]


class JobState(str, enum.Enum):
    """Where a job is in its life."""

    SCHEDULED = "scheduled"
    """Waiting for its time (``delay`` / ``eta``) in the queue's delayed set."""
    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    """An attempt failed; the next one waits for its backoff."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return self in _FINAL


_FINAL = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.ABORTED})
FINAL_STATES = tuple(s.value for s in _FINAL)


class Message(msgspec.Struct, array_like=True, frozen=True):
    """One task invocation as it sits in a queue's stream.

    Options that the caller did not set stay ``None`` and are resolved on the
    worker against the task's own options and the app's defaults.
    """

    id: str
    task: str
    queue: str
    args: list[Any]
    kwargs: dict[str, Any]
    enqueued_ms: int
    timeout: float | None = None
    result_ttl: float | None = None
    store_result: bool | None = None
    retries: int | None = None
    retry: int = 0
    """How many retries preceded this message (0 for the first attempt)."""
    cont: Cont | None = None
    """What follows this job in a workflow (chain, group, chord); None for a lone job."""
    priority: int = 0
    """0..9, 9 most urgent: which of the queue's level streams it is read from."""
    reserved: bool = False
    """It holds a start slot from its task's rate limiter (it was deferred to it)."""
    waits: int = 0
    """How often it was put back because its task's ``max_running`` was reached."""
    unique: str | None = None
    """The uniqueness lock it holds (``unique_for`` or an explicit job id), if any."""
    headers: dict[str, str] | None = None
    """Free-form string headers set by enqueue hooks (``@app.before_enqueue``), e.g.
    the trace context of ``aioq.contrib.otel``; carried on to retries and, as the
    running task left them (``ctx.headers``), to its workflow's follow-ups."""
    unknown_since_ms: int = 0
    """When (Redis ms, from its stream entry id) a worker that does not know its
    task first handed it back for a worker that does (rolling deploys); 0: never."""


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """A task's own report of how far it got (``await ctx.progress(…)``)."""

    current: float
    total: float | None = None
    info: dict[str, Any] = {}
    at_ms: int = 0


class ErrorInfo(msgspec.Struct, array_like=True, frozen=True):
    """A remote exception, as text: never a pickled object."""

    type: str
    message: str
    traceback: str = ""


NIL = msgspec.Raw(b"\xc0")
"""msgpack nil, as a raw value."""


class Outcome(msgspec.Struct, array_like=True, frozen=True):
    """The final state of a job: stored in its record and published to waiters.

    ``result`` stays raw msgpack so each reader decodes it against its own
    idea of the task's return type; it is msgpack ``nil`` when the task's
    result is not stored.
    """

    state: str
    finished_ms: int
    result: msgspec.Raw = NIL
    error: ErrorInfo | None = None


_encoder = msgspec.msgpack.Encoder()
_message_decoder = msgspec.msgpack.Decoder(Message)
_outcome_decoder = msgspec.msgpack.Decoder(Outcome)

encode = _encoder.encode


def decode_message(data: bytes) -> Message:
    """Decode a stream entry's payload; raises ``msgspec.DecodeError`` if it is not one.

    A signature is stripped **without being checked**: this is for showing messages
    (dead letters, listings, inline mode). A worker runs only what ``open_message``
    accepts."""
    return _message_decoder.decode(unsigned(data))


def open_message(data: bytes, signer: Signer | None) -> Message:
    """The message a worker may run: with a ``signer``, only a payload one of its
    keys signed (else ``signing.BadSignature``); without, any message (signed or not:
    an app without keys trusts whoever can write to its Redis)."""
    if signer is None:
        return decode_message(data)
    return _message_decoder.decode(signer.verify(data))


def pack(msg: Message, signer: Signer | None) -> bytes:
    """Encode a message for a stream or delayed set, signed when the app signs."""
    payload = encode(msg)
    return payload if signer is None else signer.sign(payload)


def decode_outcome(data: bytes) -> Outcome:
    return _outcome_decoder.decode(data)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_typed_decoders: dict[Any, msgspec.msgpack.Decoder[Any]] = {}
_plain_decoder: msgspec.msgpack.Decoder[Any] = msgspec.msgpack.Decoder()


def decode_value(raw: bytes | msgspec.Raw, type: Any = Any) -> Any:
    """Decode a msgpack value, converting it to ``type`` where one is known.

    Decoders are built once per type. A type msgspec cannot describe falls
    back to plain decoding instead of failing the caller.
    """
    decoder = _typed_decoders.get(type)
    if decoder is None:
        try:
            decoder = msgspec.msgpack.Decoder(type)
        except TypeError:
            decoder = _plain_decoder
        if len(_typed_decoders) < 1024:
            _typed_decoders[type] = decoder
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError:
        # The value does not fit the declared type (a type msgspec only knows by
        # name, or a task whose annotation is wrong): hand back what was sent.
        return _plain_decoder.decode(raw)


def validate_job_id(job_id: str) -> str:
    """A caller-chosen job id: a non-empty string of at most 200 characters."""
    if not isinstance(job_id, str) or not job_id or len(job_id) > 200:
        raise ConfigurationError(f"job_id must be a string of 1 to 200 characters, got {job_id!r}")
    return job_id


def unique_key(task: str, args: Any, kwargs: dict[str, Any]) -> str:
    """The uniqueness key of a call: its task and a digest of its arguments
    (keyword order does not matter)."""
    try:
        blob = encode([list(args), sorted(kwargs.items())])
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise ArgumentError(f"{task}: {_culprit(args, kwargs, ())} cannot be sent: {exc}") from None
    digest = hashlib.blake2b(blob, digest_size=16).hexdigest()
    return f"{task}:{digest}"


def _culprit(args: Any, kwargs: dict[str, Any], names: Sequence[str]) -> str:
    """Which argument of a call msgpack cannot encode, as an error names it."""
    for index, value in enumerate(args):
        try:
            encode(value)
        except (TypeError, OverflowError, msgspec.EncodeError):
            return f"argument {names[index]!r}" if index < len(names) else f"argument {index}"
    for key, value in kwargs.items():
        try:
            encode(value)
        except (TypeError, OverflowError, msgspec.EncodeError):
            return f"argument {key!r}"
    return "an argument"


def new_message(
    task: str,
    queue: str,
    args: Any,
    kwargs: dict[str, Any],
    *,
    timeout: float | None = None,
    result_ttl: float | None = None,
    store_result: bool | None = None,
    retries: int | None = None,
    max_bytes: int,
    job_id: str | None = None,
    cont: Cont | None = None,
    priority: int | None = None,
    unique: str | None = None,
    enqueued_ms: int | None = None,
    names: Sequence[str] = (),
    headers: dict[str, str] | None = None,
    signer: Signer | None = None,
) -> tuple[str, bytes]:
    """Build and encode one call; returns (job id, payload). ``enqueued_ms``
    defaults to now (the sender's clock: informational only); ``signer``: the
    app's, when it signs its messages (the size cap counts the signature).

    Raises ``MessageTooLarge`` before anything is written when the payload is
    over ``max_bytes``, and ``ArgumentError`` (a ``TypeError``) naming the
    argument msgpack cannot carry (``names``: the positional parameters' names).
    """
    job_id = job_id or uuid.uuid4().hex
    try:
        payload = encode(
            Message(
                job_id,
                task,
                queue,
                list(args),
                kwargs,
                now_ms() if enqueued_ms is None else enqueued_ms,
                timeout,
                result_ttl,
                store_result,
                retries,
                0,
                cont,
                priority or 0,
                False,
                0,
                unique,
                headers or None,
            )
        )
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise ArgumentError(
            f"{task}: {_culprit(args, kwargs, names)} cannot be sent: {exc}"
        ) from None
    if signer is not None:
        payload = signer.sign(payload)
    if len(payload) > max_bytes:
        raise MessageTooLarge(
            f"{task}: message is {len(payload)} bytes, over max_message_bytes={max_bytes}"
        )
    return job_id, payload


def launch_message(
    launch: Launch,
    max_bytes: int,
    headers: dict[str, str] | None = None,
    signer: Signer | None = None,
    queue: str | None = None,
) -> bytes:
    """The message that starts one task of a workflow (``canvas.start/complete``);
    ``queue``: the partition it goes to, when its queue is partitioned."""
    sig = launch.sig
    _, payload = new_message(
        sig.task,
        queue or sig.queue,
        [*launch.prefix, *sig.args],
        sig.kwargs,
        **sig.options,
        max_bytes=max_bytes,
        job_id=launch.job_id,
        cont=launch.cont,
        headers=headers,
        signer=signer,
    )
    return payload

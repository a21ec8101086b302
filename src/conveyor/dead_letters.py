"""Dead letters: messages a consumer can never process, kept in the CONVEYOR_DEAD_LETTERS stream.

A consumer moves a message there instead of redelivering it forever: at once when it cannot be
decoded or its handler rejects it (TERM), and on its last allowed delivery (the consumer's
`max_deliver`) when the handler keeps failing. The dead letter, on `conveyor.deadletters.<consumer>`,
is the original's data and headers plus `Conveyor-Dead-*` headers: consumer, stream, subject, stream
sequence, deliveries, reason, error. JetStream's own `Nats-*` publish directives are not copied (they
were applied when the original was stored); its `Nats-Msg-Id` is kept as `Conveyor-Dead-Msg-Id`.
Only once the copy is stored is the original TERMed; a copy that cannot be stored leaves the original
NAKed, never dropped.

A dead letter's own `Nats-Msg-Id` is `<consumer>:<stream>:<sequence>`, so a retry, or two replicas
reporting the same message, store it once (within the stream's duplicate window).

The server stops redelivering a message after `max_deliver` deliveries whatever ended them: the
consumer crashed on it, its ack wait expired, it was handed back on shutdown. The server then
publishes a MAX_DELIVERIES advisory; `DeadLetters.watch` turns it into a dead letter (reason
`delivery_limit`) read back from the stream, so nothing is dropped silently.

`conveyorctl dead-letters list|replay` reads them (`read`, `get`) and republishes one to its original
subject (`replay`), after which it is deleted from the dead-letter stream.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api as js_api
from nats.js.errors import NotFoundError

from conveyor import metrics, retry
from conveyor.subjects import (
    DEAD_CONSUMER_HEADER,
    DEAD_DELIVERIES_HEADER,
    DEAD_ERROR_HEADER,
    DEAD_HEADER_PREFIX,
    DEAD_LETTERS_STREAM,
    DEAD_LETTERS_SUBJECT_PREFIX,
    DEAD_LETTERS_SUBJECTS,
    DEAD_MSG_ID_HEADER,
    DEAD_REASON_HEADER,
    DEAD_SEQUENCE_HEADER,
    DEAD_STREAM_HEADER,
    DEAD_SUBJECT_HEADER,
    MSG_ID_HEADER,
)

log = logging.getLogger(__name__)

# Why a message was dead-lettered (the `reason` label of conveyor_dead_letters_total).
UNDECODABLE = "undecodable"  # its bytes are not the message the consumer expects
INVALID = "invalid"  # decoded, but the handler says it can never be processed (TERM)
FAILED = "failed"  # the handler failed (exception or NAK) on its last allowed delivery
DELIVERY_LIMIT = "delivery_limit"  # the server stopped redelivering it with no verdict from a handler

# Storing a dead letter: a few quick tries; the original is NAKed when they all fail.
STORE_POLICY = retry.RetryPolicy(initial=0.2, maximum=1.0, jitter=0.5, max_attempts=3)

# NATS header values are one line; a traceback-sized error is cut here.
_MAX_ERROR = 1000
_NATS_DIRECTIVE = "Nats-"


def subject_for(consumer: str) -> str:
    return f"{DEAD_LETTERS_SUBJECT_PREFIX}.{consumer}"


def advisory_subject(stream: str, consumer: str) -> str:
    """Where the server announces a message it will no longer deliver to `consumer`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


def header_text(text: str) -> str:
    """One line of ASCII (escaped), at most `_MAX_ERROR` characters: safe as a NATS header value."""
    line = " ".join(text.split()).encode("ascii", "backslashreplace").decode("ascii")
    return line if len(line) <= _MAX_ERROR else line[: _MAX_ERROR - 3] + "..."


@dataclass(frozen=True)
class Original:
    """The message being dead-lettered: as delivered, or as stored (for an advisory)."""

    stream: str
    subject: str
    sequence: int
    data: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    deliveries: int = 1

    @classmethod
    def of(cls, msg: Msg) -> Original:
        meta = msg.metadata
        return cls(
            meta.stream, msg.subject, meta.sequence.stream, msg.data, dict(msg.headers or {}), meta.num_delivered
        )


def dead_letter_headers(consumer: str, original: Original, reason: str, error: str) -> dict[str, str]:
    headers = {
        name: value
        for name, value in original.headers.items()
        if not name.startswith(_NATS_DIRECTIVE) and not name.startswith(DEAD_HEADER_PREFIX)
    }
    if original.headers.get(MSG_ID_HEADER):
        headers[DEAD_MSG_ID_HEADER] = original.headers[MSG_ID_HEADER]
    headers.update(
        {
            MSG_ID_HEADER: f"{consumer}:{original.stream}:{original.sequence}",
            DEAD_CONSUMER_HEADER: consumer,
            DEAD_STREAM_HEADER: original.stream,
            DEAD_SUBJECT_HEADER: original.subject,
            DEAD_SEQUENCE_HEADER: str(original.sequence),
            DEAD_DELIVERIES_HEADER: str(original.deliveries),
            DEAD_REASON_HEADER: reason,
            DEAD_ERROR_HEADER: header_text(error) or "(no error text)",
        }
    )
    return headers


class DeadLetters:
    """Moves the messages one durable consumer can never process to the dead-letter stream."""

    def __init__(self, js: JetStreamContext, consumer: str, *, policy: retry.RetryPolicy = STORE_POLICY) -> None:
        self.js = js
        self.consumer = consumer
        self.policy = policy

    async def store(self, original: Original, reason: str, error: str, *, timeout: float = 5.0) -> bool:
        """Publish the dead letter; True when stored now, False when it already was (a retry, another replica)."""
        headers = dead_letter_headers(self.consumer, original, reason, error)
        ack = await self.js.publish(subject_for(self.consumer), original.data, timeout=timeout, headers=headers)
        if ack.duplicate:
            return False
        metrics.DEAD_LETTERS.labels(consumer=self.consumer, reason=reason).inc()
        log.warning(
            "message dead-lettered",
            extra={
                "consumer": self.consumer,
                "reason": reason,
                "error": headers[DEAD_ERROR_HEADER],
                "subject": original.subject,
                "stream": original.stream,
                "stream_seq": original.sequence,
                "deliveries": original.deliveries,
                "dead_letter_seq": ack.seq,
            },
        )
        return True

    async def move(self, msg: Msg, reason: str, error: str, *, nak_delay: float = 1.0) -> bool:
        """Store a dead letter of `msg`, then TERM it; True when moved.

        When it cannot be stored, `msg` is NAKed: it comes back, or, past its delivery limit, the
        advisory brings it to `watch`.
        """
        original = Original.of(msg)

        def retrying(exc: BaseException, attempt: int, delay: float) -> None:
            log.warning("storing a dead letter failed; retrying", extra={"consumer": self.consumer, "error": str(exc)})

        try:
            await retry.retry(
                lambda: self.store(original, reason, error), policy=self.policy, retry_on=Exception, on_retry=retrying
            )
        except Exception as exc:
            log.error(
                "could not store a dead letter; the message is handed back",
                extra={"consumer": self.consumer, "stream_seq": original.sequence, "error": str(exc)},
            )
            await _settle(msg.nak(delay=nak_delay), "nak")
            return False
        await _settle(msg.term(), "term")
        return True

    async def watch(self, stream: str) -> Subscription:
        """Dead-letter each message the server stops redelivering (until the subscription is unsubscribed).

        Core NATS, so every replica of the consumer hears each advisory: the dead letter's id stores it once.
        """

        async def on_advisory(msg: Msg) -> None:
            try:
                await self._on_advisory(stream, msg.data)
            except Exception:
                log.exception("could not dead-letter a message past its delivery limit", extra={"stream": stream})

        return await _connection(self.js).subscribe(advisory_subject(stream, self.consumer), cb=on_advisory)

    async def _on_advisory(self, stream: str, data: bytes) -> None:
        advisory = json.loads(data)
        sequence, deliveries = int(advisory["stream_seq"]), int(advisory.get("deliveries") or 0)
        try:
            stored = await self.js.get_msg(stream, sequence)
        except NotFoundError:
            log.warning(
                "a message past its delivery limit is no longer in its stream",
                extra={"consumer": self.consumer, "stream": stream, "stream_seq": sequence},
            )
            return
        original = Original(
            stream, stored.subject or "", sequence, stored.data or b"", stored.headers or {}, deliveries
        )
        error = (
            f"delivered {deliveries} times without being settled: the consumer crashed, timed out "
            "or handed it back on its last delivery"
        )
        await retry.retry(lambda: self.store(original, DELIVERY_LIMIT, error), policy=self.policy, retry_on=Exception)


def _connection(js: JetStreamContext) -> NATS:
    # nats-py keeps the connection of a JetStream context private; advisories are core NATS subjects.
    connection: NATS = js._nc
    return connection


async def _settle(action: object, outcome: str) -> None:
    try:
        await action  # type: ignore[misc]
    except Exception as exc:
        # Not settled -> redelivered after ack_wait; the dead letter's id dedups a second copy.
        log.warning("could not settle a message", extra={"outcome": outcome, "error": str(exc)})


# ---------------------------------------------------------------- reading and replaying (conveyorctl)


@dataclass(frozen=True)
class DeadLetter:
    """One stored dead letter; `headers` are the original's (without the `Conveyor-Dead-*` ones)."""

    sequence: int
    time: dt.datetime | None
    consumer: str
    stream: str
    subject: str
    stream_sequence: int
    deliveries: int
    reason: str
    error: str
    msg_id: str
    headers: dict[str, str]
    data: bytes

    @classmethod
    def from_stored(cls, stored: js_api.RawStreamMsg) -> DeadLetter:
        headers = dict(stored.headers or {})

        def number(name: str) -> int:
            try:
                return int(headers.get(name, "0"))
            except ValueError:
                return 0

        return cls(
            sequence=stored.seq or 0,
            time=stored.time,
            consumer=headers.get(DEAD_CONSUMER_HEADER, ""),
            stream=headers.get(DEAD_STREAM_HEADER, ""),
            subject=headers.get(DEAD_SUBJECT_HEADER, ""),
            stream_sequence=number(DEAD_SEQUENCE_HEADER),
            deliveries=number(DEAD_DELIVERIES_HEADER),
            reason=headers.get(DEAD_REASON_HEADER, ""),
            error=headers.get(DEAD_ERROR_HEADER, ""),
            msg_id=headers.get(DEAD_MSG_ID_HEADER, ""),
            headers={
                name: value
                for name, value in headers.items()
                if name != MSG_ID_HEADER and not name.startswith(DEAD_HEADER_PREFIX)
            },
            data=stored.data or b"",
        )

    def replay_headers(self) -> dict[str, str]:
        """The original's headers, its `Nats-Msg-Id` made unique to this replay.

        The original id may still be inside its stream's duplicate window, where the replay would be
        dropped as a duplicate; suffixed, a retried replay of this dead letter is still stored once.
        """
        return {**self.headers, MSG_ID_HEADER: f"{self.msg_id or 'dead-letter'}.replay-{self.sequence}"}


async def read(js: JetStreamContext, *, consumer: str | None = None, limit: int = 0) -> list[DeadLetter]:
    """The dead letters, oldest first (only `consumer`'s when given; at most `limit`, 0 = all).

    Raises NotFoundError when there is no dead-letter stream (no service has started on this NATS).
    """
    await js.stream_info(DEAD_LETTERS_STREAM)
    subject = subject_for(consumer) if consumer else DEAD_LETTERS_SUBJECTS
    letters: list[DeadLetter] = []
    sequence = 1
    while not limit or len(letters) < limit:
        try:
            stored = await js.get_msg(DEAD_LETTERS_STREAM, seq=sequence, subject=subject, next=True)
        except NotFoundError:
            break
        letters.append(DeadLetter.from_stored(stored))
        sequence = (stored.seq or sequence) + 1
    return letters


async def get(js: JetStreamContext, sequence: int) -> DeadLetter:
    """The dead letter at `sequence`; NotFoundError when there is none."""
    return DeadLetter.from_stored(await js.get_msg(DEAD_LETTERS_STREAM, sequence))


async def replay(js: JetStreamContext, sequence: int, *, timeout: float = 5.0) -> tuple[DeadLetter, js_api.PubAck]:
    """Republish the dead letter at `sequence` to its original subject with its headers, then delete it.

    A failed delete leaves it listed; replaying it again is stored once (the same replay id).
    """
    letter = await get(js, sequence)
    if not letter.subject:
        raise ValueError(f"dead letter {sequence} does not name its original subject")
    ack = await js.publish(letter.subject, letter.data, timeout=timeout, headers=letter.replay_headers())
    await js.delete_msg(DEAD_LETTERS_STREAM, sequence)
    return letter, ack

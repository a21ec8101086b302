"""The NATS bus: subjects, streams, connection and the pull-consumer loop the services share.

Subjects and streams (also listed in the README):

- conveyor.registry.pushed (stream CONVEYOR_REGISTRY_EVENTS): ImagePushed, from the trigger's
  webhooks and from platform services; consumed by conveyor-trigger-matcher.
- conveyor.deploy.requested (stream CONVEYOR_DEPLOY_REQUESTS): DeployRequested, from the trigger
  and config (manual starts); consumed by conveyor-deployer.
- conveyor.runs.events (stream CONVEYOR_RUN_EVENTS): RunEvent, from the trigger and the
  deployer; consumed by conveyor-config-runs, which persists run records.
- conveyor.pipelines.changed (core NATS): PipelineChanged, from config; followed by trigger caches.
- conveyor.deadletters.<consumer> (stream CONVEYOR_DEAD_LETTERS): what a consumer could never
  process, with why (conveyor.dead_letters); listed and replayed by `conveyorctl dead-letters`.

Every JetStream publish carries a `Nats-Msg-Id` so a retried publish is stored once
within the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import nats
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext, api as js_api
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue
from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from conveyor import dead_letters, metrics, retry, tracing

# The bus's names live in one pure module; re-exported here for the I/O code.
from conveyor.subjects import (
    CONFIG_RUN_EVENTS_DURABLE as CONFIG_RUN_EVENTS_DURABLE,
    DEAD_LETTERS_STREAM as DEAD_LETTERS_STREAM,
    DEAD_LETTERS_SUBJECTS as DEAD_LETTERS_SUBJECTS,
    DEFAULT_DUPLICATE_WINDOW as DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_MAX_AGE as DEFAULT_MAX_AGE,
    DEFAULT_MAX_DELIVER as DEFAULT_MAX_DELIVER,
    DEPLOY_REQUESTED_SUBJECT as DEPLOY_REQUESTED_SUBJECT,
    DEPLOY_REQUESTS_STREAM as DEPLOY_REQUESTS_STREAM,
    DEPLOYER_DURABLE as DEPLOYER_DURABLE,
    IMAGE_PUSHED_SUBJECT as IMAGE_PUSHED_SUBJECT,
    MSG_ID_HEADER as MSG_ID_HEADER,
    PIPELINE_CHANGED_SUBJECT as PIPELINE_CHANGED_SUBJECT,
    PUSHES_BUCKET as PUSHES_BUCKET,
    REGISTRY_EVENTS_STREAM as REGISTRY_EVENTS_STREAM,
    RUN_EVENTS_STREAM as RUN_EVENTS_STREAM,
    RUN_EVENTS_SUBJECT as RUN_EVENTS_SUBJECT,
    STREAMS as STREAMS,
    TRIGGER_MATCHER_DURABLE as TRIGGER_MATCHER_DURABLE,
    TYPE_HEADER as TYPE_HEADER,
)

log = logging.getLogger(__name__)


def server_urls(url: str | Sequence[str]) -> list[str]:
    """`nats://a:4222,nats://b:4222` (or a list) -> each server URL, blanks dropped."""
    parts = url.split(",") if isinstance(url, str) else url
    servers = [part.strip() for part in parts if part.strip()]
    if not servers:
        raise ValueError("no NATS server URL given")
    return servers


def connect_policy(connect_timeout: float) -> retry.RetryPolicy:
    """First connection attempts: 0.2 s doubling to 2 s, no jitter, none starting after `connect_timeout`."""
    return retry.RetryPolicy(initial=0.2, maximum=2.0, multiplier=2.0, jitter=0.0, deadline=connect_timeout)


async def connect(
    url: str | Sequence[str],
    name: str,
    *,
    connect_timeout: float = 30.0,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
    sleep: retry.Sleep = asyncio.sleep,
) -> NATS:
    """Connect, retrying for up to `connect_timeout` seconds, then reconnect forever.

    `url` may name several servers of one cluster, comma-separated (CONVEYOR_NATS_URL) or as a list:
    nats-py tries them in turn, at start-up and on every reconnect.
    """
    servers = server_urls(url)
    shown = ",".join(servers)

    async def disconnected() -> None:
        log.warning("NATS disconnected", extra={"nats_url": shown})
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("NATS reconnected", extra={"nats_url": shown})
        if on_reconnect is not None:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    async def attempt() -> NATS:
        # nats-py never gives up on a first connection when reconnects are unlimited (-1) or 0, so our
        # policy could not apply: each attempt tries every server twice, then reconnects are unlimited.
        nc = await nats.connect(
            servers=servers,
            name=name,
            max_reconnect_attempts=1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            error_cb=error,
        )
        nc.options["max_reconnect_attempts"] = -1
        return nc

    def not_yet(exc: BaseException, number: int, delay: float) -> None:
        log.warning(
            "NATS not reachable yet, retrying",
            extra={"nats_url": shown, "error": str(exc), "attempt": number, "retry_in_s": round(delay, 3)},
        )

    try:
        return await retry.retry(
            attempt, policy=connect_policy(connect_timeout), retry_on=Exception, on_retry=not_yet, sleep=sleep
        )
    except Exception as exc:
        raise ConnectionError(f"cannot connect to NATS at {shown}: {exc}") from exc


async def ensure_streams(
    js: JetStreamContext,
    *,
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    max_age: float = DEFAULT_MAX_AGE,
    replicas: int = 1,
) -> None:
    """Create (or update) the streams with `replicas` copies each; idempotent, safe for every service to call.

    Consumers are created without a replica count of their own, so they follow their stream's.
    """
    for stream, subject in STREAMS.items():
        config = js_api.StreamConfig(
            name=stream,
            subjects=[subject],
            storage=js_api.StorageType.FILE,
            retention=js_api.RetentionPolicy.LIMITS,
            duplicate_window=duplicate_window,
            max_age=max_age,
            num_replicas=replicas,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            config.num_replicas = max(replicas, await _replicas_of(js, stream))
            await js.update_stream(config)


async def _replicas_of(js: JetStreamContext, stream: str) -> int:
    """An existing stream's replica count: never scaled down by a service started with a smaller setting
    (a rolling restart would make it flap); scaling down is an operator's `nats stream edit`."""
    info = await js.stream_info(stream)
    return info.config.num_replicas or 1


async def ensure_kv(js: JetStreamContext, config: js_api.KeyValueConfig, *, replicas: int = 1) -> KeyValue:
    """Open the KV bucket `config.bucket`, creating it with `replicas` copies, or scaling up one with fewer."""
    try:
        kv = await js.key_value(config.bucket)
    except NotFoundError:
        try:
            return await js.create_key_value(dataclasses.replace(config, replicas=replicas))
        except BadRequestError:  # another replica created it first
            kv = await js.key_value(config.bucket)
    stream = f"KV_{config.bucket}"
    info = await js.stream_info(stream)
    if (info.config.num_replicas or 1) < replicas:
        await js.update_stream(dataclasses.replace(info.config, num_replicas=replicas))
    return kv


async def ensure_pushes_bucket(js: JetStreamContext, ttl: float, *, replicas: int = 1) -> KeyValue:
    return await ensure_kv(js, js_api.KeyValueConfig(bucket=PUSHES_BUCKET, ttl=ttl, history=1), replicas=replicas)


async def publish(js: JetStreamContext, subject: str, message: Message, msg_id: str, *, timeout: float = 5.0) -> bool:
    """Publish a protobuf message with a dedup id; True when stored now, False if a duplicate.

    With tracing on, the publish is a PRODUCER span whose `traceparent` travels in the headers.
    """
    headers = {MSG_ID_HEADER: msg_id, TYPE_HEADER: message.DESCRIPTOR.full_name}
    with tracing.publishing(subject, msg_id, tracing.message_attributes(message)) as span:
        tracing.inject(headers)
        ack = await js.publish(subject, message.SerializeToString(), timeout=timeout, headers=headers)
        span.set_attribute("conveyor.duplicate", bool(ack.duplicate))
    return not ack.duplicate


class Outcome(Enum):
    """What a `pull_loop` handler decides for a message."""

    ACK = "ack"
    # Try again later (transient failure); dead-lettered instead on its last allowed delivery.
    NAK = "nak"
    # Can never be processed (malformed): dead-lettered, then terminated.
    TERM = "term"


class Unprocessable(Exception):
    """Raised by a handler for a message that can never be processed: TERM, with why, in the dead letter."""

    def __init__(self, error: str, *, reason: str = dead_letters.INVALID) -> None:
        super().__init__(error)
        self.error = error
        self.reason = reason


M = TypeVar("M", bound=Message)


def decode(message_type: type[M], data: bytes) -> M:
    """Parse protobuf bytes; raises DecodeError for garbage."""
    message: M = message_type()
    message.ParseFromString(data)
    return message


@dataclass
class ConsumerSpec:
    stream: str
    subject: str
    durable: str
    ack_wait: float = 30.0
    # Deliveries of one message before it is dead-lettered (<= 0: unlimited, never dead-lettered for failing).
    max_deliver: int = DEFAULT_MAX_DELIVER
    max_ack_pending: int = 1000
    batch: int = 50


async def ensure_consumer(js: JetStreamContext, spec: ConsumerSpec) -> None:
    config = js_api.ConsumerConfig(
        durable_name=spec.durable,
        ack_policy=js_api.AckPolicy.EXPLICIT,
        deliver_policy=js_api.DeliverPolicy.ALL,
        filter_subject=spec.subject,
        ack_wait=spec.ack_wait,
        max_deliver=spec.max_deliver,
        max_ack_pending=spec.max_ack_pending,
    )
    await js.add_consumer(spec.stream, config)


async def pull_loop(
    js: JetStreamContext,
    spec: ConsumerSpec,
    handle: Callable[[Msg], Awaitable[Outcome]],
    stop: asyncio.Event,
    *,
    nak_delay: float = 1.0,
    on_outcome: Callable[[Outcome], None] | None = None,
    handle_batch: Callable[[list[Msg]], Awaitable[Sequence[Outcome | Exception]]] | None = None,
) -> None:
    """Fetch batches from a durable pull consumer and settle each message by `handle`'s outcome.

    With `handle_batch`, a fetched batch is handled at once: it returns, per message in order, an outcome
    or the exception `handle` would have raised for it, settled (and dead-lettered) just the same.

    Messages of a batch are handled in order; a bad one never stops the loop. A handler exception
    counts as NAK: the message comes back after `redelivery_delay` (growing with each delivery), and
    on its last allowed delivery (`spec.max_deliver`) it is dead-lettered instead. A message the
    handler TERMs, cannot decode (DecodeError) or rejects (`Unprocessable`) is dead-lettered at once
    (conveyor.dead_letters); so is, by the advisory watcher, one the server stops redelivering.
    Returns when `stop` is set; the message in hand is finished first, the rest of its batch is
    handed back (nak).
    """
    await ensure_consumer(js, spec)
    dead = dead_letters.DeadLetters(js, spec.durable)
    # Before the first fetch, so no advisory of this consumer goes unheard.
    advisories = await dead.watch(spec.stream)
    try:
        subscription = await js.pull_subscribe_bind(spec.durable, spec.stream)
    except BaseException:
        await _unsubscribe(advisories)
        raise
    lag = asyncio.get_running_loop().create_task(track_consumer_lag(js, spec.stream, spec.durable))
    try:
        while not stop.is_set():
            try:
                messages = await subscription.fetch(spec.batch, timeout=1.0)
            except TimeoutError:
                continue
            except Exception as exc:  # connection loss, server restarting
                if stop.is_set():
                    break
                log.warning("fetch failed, retrying", extra={"durable": spec.durable, "error": str(exc)})
                await asyncio.sleep(0.5)
                continue
            if handle_batch is not None:
                await _process_batch(messages, spec, handle_batch, dead, nak_delay=nak_delay, on_outcome=on_outcome)
                continue
            for index, msg in enumerate(messages):
                if stop.is_set():
                    for rest in messages[index:]:
                        await _settle(rest, Outcome.NAK, 0)
                    break
                outcome = await _process(msg, spec, handle, dead, nak_delay)
                if on_outcome is not None:
                    on_outcome(outcome)
    finally:
        lag.cancel()
        await _unsubscribe(subscription)
        await _unsubscribe(advisories)


async def _unsubscribe(subscription: Subscription | JetStreamContext.PullSubscription) -> None:
    try:
        await subscription.unsubscribe()
    except Exception:
        log.debug("unsubscribe failed", exc_info=True)


# NAKed messages come back after nak_delay, then 3x longer each delivery, at most a minute apart: with the
# default 5 deliveries and 1 s, a message that keeps failing is dead-lettered about 40 s after it was first
# handled, while a short outage (a database restarting) does not dead-letter what it made fail.
REDELIVERY_MULTIPLIER = 3.0
REDELIVERY_MAXIMUM = 60.0


def redelivery_delay(nak_delay: float, delivered: int) -> float:
    """The wait before the next delivery of a message NAKed on its `delivered`-th delivery."""
    policy = retry.RetryPolicy(
        initial=nak_delay, maximum=max(nak_delay, REDELIVERY_MAXIMUM), multiplier=REDELIVERY_MULTIPLIER, jitter=0.0
    )
    return policy.ceiling(delivered)


def deliveries(msg: Msg) -> int:
    """How many times JetStream has delivered `msg` (this time included)."""
    try:
        return max(int(msg.metadata.num_delivered), 1)
    except Exception:  # not a JetStream delivery
        return 1


async def _process(
    msg: Msg,
    spec: ConsumerSpec,
    handle: Callable[[Msg], Awaitable[Outcome]],
    dead: dead_letters.DeadLetters,
    nak_delay: float,
    *,
    opened: Span | None = None,
) -> Outcome:
    """Handle one message and settle it; returns how it was settled (TERM: dead-lettered).

    `opened`: the message's consumer span, already started (a batch), ended here."""
    delivered = deliveries(msg)
    last = 0 < spec.max_deliver <= delivered
    with (
        tracing.consuming(msg.subject, msg.headers, spec.durable)
        if opened is None
        else otel_trace.use_span(opened, end_on_exit=True)
    ) as span:
        reason = error = ""
        try:
            outcome = await handle(msg)
        except DecodeError as exc:
            outcome, reason, error = Outcome.TERM, dead_letters.UNDECODABLE, f"cannot be decoded: {exc}"
        except Unprocessable as exc:
            outcome, reason, error = Outcome.TERM, exc.reason, exc.error
        except Exception as exc:
            then = "dead-lettered (last delivery)" if last else "will be redelivered"
            log.exception(f"message handler failed; {then}", extra={"durable": spec.durable, "deliveries": delivered})
            span.record_exception(exc)
            tracing.fail(span, f"handler failed; {then}")
            outcome, error = Outcome.NAK, f"{type(exc).__name__}: {exc}"
        if outcome is Outcome.TERM and not reason:
            reason, error = dead_letters.INVALID, "terminated by the handler (see the consumer's log)"
        elif outcome is Outcome.NAK and last:
            outcome, reason = Outcome.TERM, dead_letters.FAILED
            error = f"failed on its last allowed delivery ({delivered}): {error or 'the handler nak-ed it'}"
        span.set_attribute("conveyor.outcome", outcome.value)
        if outcome is Outcome.TERM:
            moved = await dead.move(msg, reason, error, nak_delay=redelivery_delay(nak_delay, delivered))
            return outcome if moved else Outcome.NAK
    await _settle(msg, outcome, redelivery_delay(nak_delay, delivered))
    return outcome


_batch_traces: contextvars.ContextVar[dict[int, Context | None]] = contextvars.ContextVar(
    "conveyor_batch_traces",
    default={},  # noqa: B039 - never mutated, only replaced
)


def batch_trace(msg: Msg) -> Context | None:
    """Inside a `handle_batch`: the trace context of `msg`'s consumer span (None when tracing is off)."""
    return _batch_traces.get().get(id(msg))


async def _process_batch(
    messages: list[Msg],
    spec: ConsumerSpec,
    handle_batch: Callable[[list[Msg]], Awaitable[Sequence[Outcome | Exception]]],
    dead: dead_letters.DeadLetters,
    *,
    nak_delay: float,
    on_outcome: Callable[[Outcome], None] | None,
) -> None:
    results: Sequence[Outcome | Exception]
    # Each message's consumer span is open while the batch is handled, so what the handler does for
    # one message (e.g. persisting it) is traced as that message's child: see `batch_trace`.
    spans = [tracing.start_consuming(msg.subject, msg.headers, spec.durable) for msg in messages]
    token = _batch_traces.set({id(msg): tracing.context_of(span) for msg, span in zip(messages, spans, strict=True)})
    try:
        results = await handle_batch(messages)
    except Exception as exc:  # the handler failed as a whole: every message fails alike
        results = [exc] * len(messages)
    finally:
        _batch_traces.reset(token)
    for msg, result, span in zip(messages, results, spans, strict=True):

        async def replay(_: Msg, result: Outcome | Exception = result) -> Outcome:
            if isinstance(result, Exception):
                raise result
            return result

        outcome = await _process(msg, spec, replay, dead, nak_delay, opened=span)
        if on_outcome is not None:
            on_outcome(outcome)


async def track_consumer_lag(
    js: JetStreamContext, stream: str, durable: str, *, interval: float = metrics.CONSUMER_LAG_INTERVAL
) -> None:
    """Keep the consumer's pending gauges current from JetStream consumer info, until cancelled.

    Polled rather than read off delivered messages: a consumer that stopped fetching must show its
    lag growing. One small request per interval.
    """
    while True:
        try:
            info = await js.consumer_info(stream, durable)
        except Exception as exc:  # NATS reconnecting: keep the last figures until the next poll
            log.debug("consumer info failed", extra={"durable": durable, "error": str(exc)})
        else:
            metrics.CONSUMER_PENDING.labels(consumer=durable).set(info.num_pending or 0)
            metrics.CONSUMER_ACK_PENDING.labels(consumer=durable).set(info.num_ack_pending or 0)
        await asyncio.sleep(interval)


async def _settle(msg: Msg, outcome: Outcome, nak_delay: float) -> None:
    """ACK or NAK (TERM goes through the dead letters)."""
    try:
        if outcome is Outcome.ACK:
            # Not waiting for the server's confirmation: a lost ack only means a redelivery,
            # which every consumer absorbs (idempotent handlers), and waiting would serialise
            # the loop on a round trip per message.
            await msg.ack()
        else:
            await msg.nak(delay=nak_delay)
    except Exception as exc:
        # Not acked -> redelivered after ack_wait; consumers are idempotent.
        log.warning("could not settle message", extra={"outcome": outcome.value, "error": str(exc)})


# Restarts of a crashed consumer: quick at first, then at most every 30s, forever.
CONSUMER_RESTART_POLICY = retry.RetryPolicy(initial=0.5, maximum=30.0)


async def consume_forever(
    name: str,
    consume: Callable[[], Awaitable[None]],
    *,
    policy: retry.RetryPolicy = CONSUMER_RESTART_POLICY,
    on_health: Callable[[bool], Awaitable[None] | None] | None = None,
    stop: asyncio.Event | None = None,
    stable_after: float = 60.0,
    sleep: retry.Sleep = asyncio.sleep,
    clock: retry.Clock = time.monotonic,
    rand: retry.Random = random.random,
) -> None:
    """Run `consume()` (a fresh coroutine each time, e.g. a `pull_loop`) and restart it when it crashes.

    A crash (any Exception) is logged with its traceback, reported as `on_health(False)` (sync or
    async), and followed by a backoff wait; the restarted consumer is reported `on_health(True)`.
    A consumer that ran `stable_after` seconds before crashing restarts from the shortest wait.
    Returns when `consume()` returns (it was told to stop), or when `stop` is set while it is down;
    re-raises the last crash once `policy` gives up. Cancellation propagates into the running
    consumer and out of this call, with no health report.
    """
    backoff = retry.Backoff(policy, clock=clock, rand=rand)
    while True:
        started = clock()
        try:
            await consume()
            return
        except Exception:
            if stop is not None and stop.is_set():
                log.warning("consumer failed while stopping", extra={"consumer": name}, exc_info=True)
                return
            if clock() - started >= stable_after:
                backoff.reset()
            delay = backoff.next_delay()
            if delay is None:
                log.exception("consumer crashed; giving up", extra={"consumer": name, "restarts": backoff.failures - 1})
                raise
            log.exception(
                "consumer crashed; restarting",
                extra={"consumer": name, "attempt": backoff.failures, "retry_in_s": round(delay, 3)},
            )
        await _report(on_health, False)
        if await _stopped_within(delay, stop, sleep):
            return
        await _report(on_health, True)


async def _report(on_health: Callable[[bool], Awaitable[None] | None] | None, healthy: bool) -> None:
    if on_health is None:
        return
    try:
        result = on_health(healthy)
        if inspect.isawaitable(result):
            await result
    except Exception:
        log.warning("health report failed", exc_info=True)


async def _stopped_within(delay: float, stop: asyncio.Event | None, sleep: retry.Sleep) -> bool:
    """Wait `delay` (by `sleep`); True as soon as `stop` is set."""
    if stop is None:
        await sleep(delay)
        return False
    if stop.is_set():
        return True
    sleeper = asyncio.ensure_future(sleep(delay))
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in (sleeper, stopper):
            waiter.cancel()
    return stop.is_set()

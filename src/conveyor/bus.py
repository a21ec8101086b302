"""The NATS bus: subjects, streams, connection and the pull-consumer loop the services share.

Subjects and streams (also listed in the README):

- conveyor.registry.pushed (stream CONVEYOR_REGISTRY_EVENTS): ImagePushed, from the trigger's
  webhooks and from platform services; consumed by conveyor-trigger-matcher.
- conveyor.deploy.requested (stream CONVEYOR_DEPLOY_REQUESTS): DeployRequested, from the trigger
  and config (manual starts); consumed by conveyor-deployer.
- conveyor.runs.events (stream CONVEYOR_RUN_EVENTS): RunEvent, from the trigger and the
  deployer; consumed by conveyor-config-runs, which persists run records.
- conveyor.pipelines.changed (core NATS): PipelineChanged, from config; followed by trigger caches.

Every JetStream publish carries a `Nats-Msg-Id` so a retried publish is stored once
within the stream's duplicate window.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeVar

import nats
from google.protobuf.message import DecodeError, Message
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from conveyor import retry

# The bus's names live in one pure module; re-exported here for the I/O code.
from conveyor.subjects import (
    CONFIG_RUN_EVENTS_DURABLE as CONFIG_RUN_EVENTS_DURABLE,
    DEFAULT_DUPLICATE_WINDOW as DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_MAX_AGE as DEFAULT_MAX_AGE,
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


async def connect(
    url: str,
    name: str,
    *,
    connect_timeout: float = 30.0,
    on_disconnect: Callable[[], Awaitable[None]] | None = None,
    on_reconnect: Callable[[], Awaitable[None]] | None = None,
) -> NATS:
    """Connect, retrying for up to `connect_timeout` seconds, then reconnect forever."""

    async def disconnected() -> None:
        log.warning("NATS disconnected", extra={"nats_url": url})
        if on_disconnect is not None:
            await on_disconnect()

    async def reconnected() -> None:
        log.info("NATS reconnected", extra={"nats_url": url})
        if on_reconnect is not None:
            await on_reconnect()

    async def error(exc: Exception) -> None:
        log.warning("NATS error: %s", exc)

    deadline = time.monotonic() + connect_timeout
    delay = 0.2
    while True:
        try:
            return await nats.connect(
                url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                disconnected_cb=disconnected,
                reconnected_cb=reconnected,
                error_cb=error,
            )
        except Exception as exc:
            if time.monotonic() + delay > deadline:
                raise ConnectionError(f"cannot connect to NATS at {url}: {exc}") from exc
            log.warning("NATS not reachable yet, retrying", extra={"nats_url": url, "error": str(exc)})
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)


async def ensure_streams(
    js: JetStreamContext,
    *,
    duplicate_window: float = DEFAULT_DUPLICATE_WINDOW,
    max_age: float = DEFAULT_MAX_AGE,
) -> None:
    """Create (or update) the three streams; idempotent, safe for every service to call."""
    for stream, subject in STREAMS.items():
        config = js_api.StreamConfig(
            name=stream,
            subjects=[subject],
            storage=js_api.StorageType.FILE,
            retention=js_api.RetentionPolicy.LIMITS,
            duplicate_window=duplicate_window,
            max_age=max_age,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)


async def ensure_pushes_bucket(js: JetStreamContext, ttl: float) -> object:
    try:
        return await js.key_value(PUSHES_BUCKET)
    except (NotFoundError, Exception):
        return await js.create_key_value(js_api.KeyValueConfig(bucket=PUSHES_BUCKET, ttl=ttl, history=1))


async def publish(js: JetStreamContext, subject: str, message: Message, msg_id: str, *, timeout: float = 5.0) -> bool:
    """Publish a protobuf message with a dedup id; True when stored now, False if a duplicate."""
    ack = await js.publish(
        subject,
        message.SerializeToString(),
        timeout=timeout,
        headers={MSG_ID_HEADER: msg_id, TYPE_HEADER: message.DESCRIPTOR.full_name},
    )
    return not ack.duplicate


class Outcome(Enum):
    ACK = "ack"
    # Try again later (transient failure).
    NAK = "nak"
    # Never deliverable (malformed); counted and dropped.
    TERM = "term"


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
    max_deliver: int = -1
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
) -> None:
    """Fetch batches from a durable pull consumer and settle each message by `handle`'s outcome.

    Messages of a batch are handled in order. A handler exception naks the message
    (redelivered later) and never stops the loop. Returns when `stop` is set; the
    message in hand is finished first, the rest of its batch is handed back (nak).
    """
    await ensure_consumer(js, spec)
    subscription = await js.pull_subscribe_bind(spec.durable, spec.stream)
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
            for index, msg in enumerate(messages):
                if stop.is_set():
                    for rest in messages[index:]:
                        await _settle(rest, Outcome.NAK, 0)
                    break
                try:
                    outcome = await handle(msg)
                except DecodeError:
                    outcome = Outcome.TERM
                except Exception:
                    log.exception("message handler failed; will be redelivered", extra={"durable": spec.durable})
                    outcome = Outcome.NAK
                if on_outcome is not None:
                    on_outcome(outcome)
                await _settle(msg, outcome, nak_delay)
    finally:
        try:
            await subscription.unsubscribe()
        except Exception:
            log.debug("unsubscribe failed", exc_info=True)


async def _settle(msg: Msg, outcome: Outcome, nak_delay: float) -> None:
    try:
        if outcome is Outcome.ACK:
            # Not waiting for the server's confirmation: a lost ack only means a redelivery,
            # which every consumer absorbs (idempotent handlers), and waiting would serialise
            # the loop on a round trip per message.
            await msg.ack()
        elif outcome is Outcome.NAK:
            await msg.nak(delay=nak_delay)
        else:
            await msg.term()
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

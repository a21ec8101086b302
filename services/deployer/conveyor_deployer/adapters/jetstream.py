"""JetStream adapters: run events out, deploy requests in (the durable pull consumer and its acks)."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.v1 import bus_pb2

log = logging.getLogger(__name__)


class JetStreamRunEvents:
    """`RunEventSink` on JetStream: returns once the event is stored (msg id = event id)."""

    def __init__(self, js: JetStreamContext, *, attempts: int = 5) -> None:
        self.js = js
        self.attempts = attempts

    async def publish(self, event: bus_pb2.RunEvent) -> bool:
        delay = 0.2
        for attempt in range(1, self.attempts + 1):
            try:
                return await bus.publish(self.js, bus.RUN_EVENTS_SUBJECT, event, event.event_id)
            except Exception as exc:  # timeouts, reconnects: the same msg id makes retries safe
                if attempt == self.attempts:
                    raise
                log.warning("publishing a run event failed; retrying", extra={"error": str(exc)})
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        raise AssertionError("unreachable")


class NatsDelivery:
    """A `Delivery` backed by a JetStream message."""

    def __init__(self, msg: Msg) -> None:
        self.msg = msg

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def attempt(self) -> int:
        try:
            return int(self.msg.metadata.num_delivered)
        except Exception:
            return 1

    async def in_progress(self) -> None:
        await self.msg.in_progress()

    async def ack(self) -> None:
        await self.msg.ack_sync(timeout=5)

    async def nak(self, delay: float = 0.0) -> None:
        await self.msg.nak(delay=delay or None)

    async def term(self) -> None:
        await self.msg.term()


class DeployRequestPull:
    """One bound pull subscription on the deployer's durable consumer."""

    def __init__(self, subscription: JetStreamContext.PullSubscription) -> None:
        self.subscription = subscription

    async def fetch(self, batch: int, timeout: float) -> list[NatsDelivery]:
        """Up to `batch` messages; TimeoutError when none arrived within `timeout`."""
        return [NatsDelivery(msg) for msg in await self.subscription.fetch(batch, timeout=timeout)]

    async def unsubscribe(self) -> None:
        await self.subscription.unsubscribe()


class JetStreamDeployRequests:
    """The durable pull consumer of `DeployRequested` (at most `max_held` unacknowledged)."""

    def __init__(self, js: JetStreamContext, *, ack_wait: float, max_held: int) -> None:
        self.js = js
        self.spec = bus.ConsumerSpec(
            stream=bus.DEPLOY_REQUESTS_STREAM,
            subject=bus.DEPLOY_REQUESTED_SUBJECT,
            durable=bus.DEPLOYER_DURABLE,
            ack_wait=ack_wait,
            max_deliver=-1,
            max_ack_pending=max(max_held, 1),
        )

    async def prepare(self) -> None:
        await bus.ensure_consumer(self.js, self.spec)

    async def subscribe(self) -> DeployRequestPull:
        return DeployRequestPull(await self.js.pull_subscribe_bind(self.spec.durable, self.spec.stream))

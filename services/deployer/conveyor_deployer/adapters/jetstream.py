"""JetStream adapters: run events out, deploy requests in (the durable pull consumer and its acks)."""

from __future__ import annotations

import asyncio
import logging

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from conveyor import bus, dead_letters
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

    def __init__(self, msg: Msg, dead: dead_letters.DeadLetters) -> None:
        self.msg = msg
        self.dead = dead

    @property
    def data(self) -> bytes:
        return self.msg.data

    @property
    def headers(self) -> dict[str, str] | None:
        return self.msg.headers

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

    async def dead_letter(self, reason: str, error: str) -> None:
        """Move it to the dead-letter stream, then TERM it (NAK it when the dead letter cannot be stored)."""
        await self.dead.move(self.msg, reason, error, nak_delay=2.0)


class DeployRequestPull:
    """One bound pull subscription on the deployer's durable consumer (its lag gauges' poller, and the
    delivery-limit advisories dead-lettering what the server stopped redelivering)."""

    def __init__(
        self,
        subscription: JetStreamContext.PullSubscription,
        lag: asyncio.Task[None],
        dead: dead_letters.DeadLetters,
        advisories: Subscription,
    ) -> None:
        self.subscription = subscription
        self.lag = lag
        self.dead = dead
        self.advisories = advisories

    async def fetch(self, batch: int, timeout: float) -> list[NatsDelivery]:
        """Up to `batch` messages; TimeoutError when none arrived within `timeout`."""
        return [NatsDelivery(msg, self.dead) for msg in await self.subscription.fetch(batch, timeout=timeout)]

    async def unsubscribe(self) -> None:
        self.lag.cancel()
        try:
            await self.advisories.unsubscribe()
        finally:
            await self.subscription.unsubscribe()


class JetStreamDeployRequests:
    """The durable pull consumer of `DeployRequested` (at most `max_held` unacknowledged)."""

    def __init__(
        self, js: JetStreamContext, *, ack_wait: float, max_held: int, max_deliver: int = bus.DEFAULT_MAX_DELIVER
    ) -> None:
        self.js = js
        self.spec = bus.ConsumerSpec(
            stream=bus.DEPLOY_REQUESTS_STREAM,
            subject=bus.DEPLOY_REQUESTED_SUBJECT,
            durable=bus.DEPLOYER_DURABLE,
            ack_wait=ack_wait,
            max_deliver=max_deliver,
            max_ack_pending=max(max_held, 1),
        )

    async def prepare(self) -> None:
        await bus.ensure_consumer(self.js, self.spec)

    async def subscribe(self) -> DeployRequestPull:
        dead = dead_letters.DeadLetters(self.js, self.spec.durable)
        # Before the first fetch, so no advisory of this consumer goes unheard.
        advisories = await dead.watch(self.spec.stream)
        try:
            subscription = await self.js.pull_subscribe_bind(self.spec.durable, self.spec.stream)
        except BaseException:
            await advisories.unsubscribe()
            raise
        lag = asyncio.get_running_loop().create_task(
            bus.track_consumer_lag(self.js, self.spec.stream, self.spec.durable)
        )
        return DeployRequestPull(subscription, lag, dead, advisories)

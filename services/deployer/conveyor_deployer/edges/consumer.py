"""The JetStream edge: deploy requests in, each handed to the `Dispatcher`.

Messages are fetched only while fewer than `max_held` are held, decoded, checked and handed to
the `Dispatcher`, which settles each one: ack once its terminal RunEvent is stored, nak to
hand it back. A malformed message never stops the consumer: undecodable ones, and those with
any field no correct producer sends (a timestamp out of range, an unknown enum value, a name
that does not parse), are dead-lettered (conveyor.dead_letters), logged with every reason and
counted; decodable but undeployable ones end their run as FAILED with the reason. A request
nak'ed on its last allowed delivery is dead-lettered by the subscription's delivery-limit watcher.
The subscription and the acks themselves are `conveyor_deployer.adapters.jetstream`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Protocol

from google.protobuf.message import DecodeError

from conveyor import bus, dead_letters, logs, metrics, tracing
from conveyor.v1 import bus_pb2
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.ports import Delivery
from conveyor_deployer.usecases.requests import InvalidDeployRequest, parse_deploy_request

log = logging.getLogger(__name__)

CONSUMER = bus.DEPLOYER_DURABLE


class InboundDelivery(Delivery, Protocol):
    """A delivered deploy request: its bytes, and `dead_letter` to set it aside for good."""

    @property
    def data(self) -> bytes: ...

    @property
    def headers(self) -> Mapping[str, str] | None: ...

    async def dead_letter(self, reason: str, error: str) -> None: ...


class Pull(Protocol):
    async def fetch(self, batch: int, timeout: float) -> Sequence[InboundDelivery]: ...

    async def unsubscribe(self) -> None: ...


class DeployRequestSource(Protocol):
    """The durable consumer of deploy requests (JetStream in production)."""

    async def prepare(self) -> None: ...

    async def subscribe(self) -> Pull: ...


class DeployRequestConsumer:
    def __init__(
        self,
        requests: DeployRequestSource,
        dispatcher: Dispatcher,
        runner: DeployRunner,
        *,
        max_held: int,
        default_rollout_timeout: float,
    ) -> None:
        self.requests = requests
        self.dispatcher = dispatcher
        self.runner = runner
        self.max_held = max_held
        self.default_rollout_timeout = default_rollout_timeout

    async def prepare(self) -> None:
        await self.requests.prepare()

    async def run(self, stop: asyncio.Event) -> None:
        """Fetch and dispatch until `stop` is set (held messages are the dispatcher's to settle)."""
        subscription = await self.requests.subscribe()
        try:
            while not stop.is_set():
                room = self.max_held - self.dispatcher.held
                if room <= 0:
                    self.dispatcher.settled.clear()
                    await _wait_any(stop, self.dispatcher.settled, timeout=1.0)
                    continue
                try:
                    messages = await subscription.fetch(min(room, 64), timeout=1.0)
                except TimeoutError:
                    continue
                except Exception as exc:  # reconnecting, server restarting
                    if stop.is_set():
                        break
                    log.warning("fetching deploy requests failed; retrying", extra={"error": str(exc)})
                    await _wait_any(stop, timeout=0.5)
                    continue
                for delivery in messages:
                    await self.handle(delivery)
        finally:
            try:
                await subscription.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)

    async def handle(self, delivery: InboundDelivery) -> None:
        # The dispatcher keeps this span's context with the request: the deploy span is its child.
        with tracing.consuming(bus.DEPLOY_REQUESTED_SUBJECT, delivery.headers, CONSUMER):
            await self._handle(delivery)

    async def _handle(self, delivery: InboundDelivery) -> None:
        try:
            message = bus.decode(bus_pb2.DeployRequested, delivery.data)
        except DecodeError as exc:
            metrics.BAD_INPUT.labels(source="deploy_requested", reason="undecodable").inc()
            metrics.BUS_MESSAGES.labels(consumer=CONSUMER, outcome="term").inc()
            log.warning("dead-lettering an undecodable deploy request", extra={"bytes": len(delivery.data)})
            await _quietly(delivery.dead_letter(dead_letters.UNDECODABLE, f"not a DeployRequested: {exc}"))
            return
        try:
            request = parse_deploy_request(
                message, default_rollout_timeout=self.default_rollout_timeout, now=dt.datetime.now(dt.UTC)
            )
        except InvalidDeployRequest as exc:
            metrics.BAD_INPUT.labels(source="deploy_requested", reason=exc.reason).inc()
            if exc.run is None:  # malformed: the run it names is not reported on
                log.warning("dead-lettering a malformed deploy request", extra={"error": exc.message})
                metrics.BUS_MESSAGES.labels(consumer=CONSUMER, outcome="term").inc()
                await _quietly(delivery.dead_letter(dead_letters.INVALID, exc.message))
                return
            run_id = exc.run.rsplit("/", 1)[-1]
            with logs.bind(pipeline=exc.run.split("/")[1], run=exc.run):
                log.warning("deploy request cannot be deployed", extra={"error": exc.message})
                try:
                    await self.runner.fail_invalid(message, run_id, exc.message, delivery.attempt)
                except Exception:
                    log.exception("could not report the failed run; it will be redelivered")
                    await _quietly(delivery.nak(2.0))
                    return
            metrics.BUS_MESSAGES.labels(consumer=CONSUMER, outcome="ack").inc()
            await _quietly(delivery.ack())
            return
        metrics.BUS_MESSAGES.labels(consumer=CONSUMER, outcome="dispatched").inc()
        with logs.bind(pipeline=request.pipeline_id, run=request.run):
            log.info(
                "deploy request received",
                extra={"target": str(request.target), "image": request.image, "attempt": delivery.attempt},
            )
        await self.dispatcher.submit(request, delivery)


async def _wait_any(*events: asyncio.Event, timeout: float) -> None:
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def _quietly(action: object) -> None:
    try:
        await action  # type: ignore[misc]
    except Exception as exc:
        log.warning("could not settle a deploy request", extra={"error": str(exc)})

"""Publishes outbox rows to JetStream (the `MessagePublisher` of the outbox relay)."""

from __future__ import annotations

from google.protobuf.message import Message
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.v1 import bus_pb2

_MESSAGE_TYPES: dict[str, type[Message]] = {bus.DEPLOY_REQUESTED_SUBJECT: bus_pb2.DeployRequested}


class JetStreamPublisher:
    def __init__(self, nc: NATS, js: JetStreamContext, timeout: float = 3.0) -> None:
        self.nc = nc
        self.js = js
        self.timeout = timeout

    def ready(self) -> bool:
        return bool(self.nc.is_connected)

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        message = bus.decode(_MESSAGE_TYPES[subject], payload)
        await bus.publish(self.js, subject, message, msg_id, timeout=self.timeout)

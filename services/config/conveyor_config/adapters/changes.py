"""PipelineChanged notices on core NATS, so caches (the trigger's matcher, other config replicas) can follow."""

from __future__ import annotations

from nats.aio.client import Client as NATS

from conveyor.bus import PIPELINE_CHANGED_SUBJECT, TYPE_HEADER
from conveyor.v1 import bus_pb2


class NatsChangePublisher:
    """Best effort: core NATS has no delivery guarantee; subscribers also re-sync periodically."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc

    async def pipeline_changed(self, message: bus_pb2.PipelineChanged) -> None:
        await self.nc.publish(
            PIPELINE_CHANGED_SUBJECT,
            message.SerializeToString(),
            headers={TYPE_HEADER: message.DESCRIPTOR.full_name},
        )

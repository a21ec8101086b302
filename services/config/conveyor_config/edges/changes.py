"""Follows PipelineChanged notices on core NATS (from every replica) to keep the GetPipeline cache coherent."""

from __future__ import annotations

import logging
from collections.abc import Callable

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from conveyor import bus
from conveyor.bus import PIPELINE_CHANGED_SUBJECT
from conveyor.v1 import bus_pb2

log = logging.getLogger(__name__)


async def follow_changes(nc: NATS, on_change: Callable[[str | None], None]) -> Subscription:
    """Call `on_change(pipeline_id)` for every PipelineChanged notice, from any replica.

    `None` means "could be anything" (a notice without a usable name).
    """

    async def handle(msg: Msg) -> None:
        try:
            change = bus.decode(bus_pb2.PipelineChanged, msg.data)
        except DecodeError:
            log.warning("ignoring an undecodable PipelineChanged notice")
            return
        name = change.pipeline.name
        on_change(name.removeprefix("pipelines/") if name.startswith("pipelines/") else None)

    return await nc.subscribe(PIPELINE_CHANGED_SUBJECT, cb=handle)

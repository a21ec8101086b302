"""Follows core-NATS notices from every replica: PipelineChanged (GetPipeline cache) and, via
`NoticeFollower`, the run-log notices of edges/run_logs.py."""

from __future__ import annotations

import abc
import asyncio
import contextlib
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


class NoticeFollower(abc.ABC):
    """Hands every message on `subject` to `_handle`; `_restarted` runs when following resumes after a crash.

    Core NATS keeps nothing for an absent subscriber, so a restart means notices may have been missed.
    """

    subject = ""
    description = "notice"

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self._subscription: Subscription | None = None
        self._followed = False

    async def subscribe(self) -> None:
        """Subscribe now (app.py does before serving, so no notice sent after start is missed)."""
        if self._subscription is None:
            self._subscription = await self.nc.subscribe(self.subject)

    async def follow(self, stop: asyncio.Event) -> None:
        """Handle notices until `stop` is set; raises ConnectionError if the subscription ends before.

        Meant for `bus.consume_forever`, which calls it again after a crash.
        """
        await self.subscribe()
        subscription = self._subscription
        assert subscription is not None
        if self._followed:
            self._restarted()
        self._followed = True
        stopper = asyncio.ensure_future(stop.wait())
        try:
            messages = aiter(subscription.messages)
            while not stop.is_set():
                receiver = asyncio.ensure_future(anext(messages))
                await asyncio.wait((receiver, stopper), return_when=asyncio.FIRST_COMPLETED)
                if not receiver.done():
                    receiver.cancel()
                    break
                try:
                    msg = receiver.result()
                except StopAsyncIteration:
                    raise ConnectionError(f"the {self.description} subscription ended") from None
                self._handle(msg)
        finally:
            stopper.cancel()
            self._subscription = None
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    @abc.abstractmethod
    def _handle(self, msg: Msg) -> None: ...

    @abc.abstractmethod
    def _restarted(self) -> None: ...


class ChangeFollower(NoticeFollower):
    """Calls `on_change(pipeline_id)` for every PipelineChanged notice, from any replica.

    `None` means "could be anything": a notice without a usable name, or a restart after the
    subscription ended (notices sent meanwhile were missed).
    """

    subject = PIPELINE_CHANGED_SUBJECT
    description = "PipelineChanged"

    def __init__(self, nc: NATS, on_change: Callable[[str | None], None]) -> None:
        super().__init__(nc)
        self.on_change = on_change

    def _restarted(self) -> None:
        self.on_change(None)

    def _handle(self, msg: Msg) -> None:
        try:
            change = bus.decode(bus_pb2.PipelineChanged, msg.data)
        except DecodeError:
            log.warning("ignoring an undecodable PipelineChanged notice")
            return
        name = change.pipeline.name
        self.on_change(name.removeprefix("pipelines/") if name.startswith("pipelines/") else None)

"""Helpers for the config service's integration tests."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import grpc
import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from conveyor import bus
from conveyor.v1 import bus_pb2, pipeline_pb2, pipeline_service_pb2, run_service_pb2
from conveyor.v1.run_pb2 import RunLogEntry as Entry
from tests.integration.config.conftest import Clients
from tests.unit.config.samples import sample_pipeline


async def rpc_error(call: Awaitable[Any], code: grpc.StatusCode) -> grpc.aio.AioRpcError:
    """Await a call that must fail with `code`; returns the error for further checks."""
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await call
    assert error.value.code() == code, error.value.details()
    return error.value


async def create_pipeline(clients: Clients, pipeline_id: str, **overrides: object) -> pipeline_pb2.Pipeline:
    return await clients.pipelines.CreatePipeline(
        pipeline_service_pb2.CreatePipelineRequest(pipeline=sample_pipeline(**overrides), pipeline_id=pipeline_id)
    )


async def stream_messages(js: JetStreamContext, stream: str) -> list[tuple[str, bytes]]:
    """Every message stored in a stream: (Nats-Msg-Id, data)."""
    info = await js.stream_info(stream)
    out: list[tuple[str, bytes]] = []
    if info.state.messages == 0:
        return out
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            raw = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        out.append(((raw.headers or {}).get(bus.MSG_ID_HEADER, ""), raw.data or b""))
    return out


async def deploy_requests(js: JetStreamContext) -> list[tuple[str, bus_pb2.DeployRequested]]:
    return [
        (msg_id, bus.decode(bus_pb2.DeployRequested, data))
        for msg_id, data in await stream_messages(js, bus.DEPLOY_REQUESTS_STREAM)
    ]


async def run_state(clients: Clients, name: str) -> int:
    """The run's state; an AssertionError (so `eventually` retries) while it is not stored yet."""
    try:
        run = await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=name))
    except grpc.aio.AioRpcError as exc:
        assert exc.code() != grpc.StatusCode.NOT_FOUND, f"{name} not stored yet"
        raise
    return int(run.state)


async def settled(js: JetStreamContext) -> None:
    """Every RunEvent published so far was handled and settled (acked or terminated)."""
    info = await js.consumer_info(bus.RUN_EVENTS_STREAM, bus.CONFIG_RUN_EVENTS_DURABLE)
    stream = await js.stream_info(bus.RUN_EVENTS_STREAM)
    assert info.delivered.stream_seq == stream.state.last_seq
    assert (info.num_pending, info.num_ack_pending) == (0, 0)


async def publish_event(js: JetStreamContext, event: bus_pb2.RunEvent, msg_id: str | None = None) -> bool:
    return await bus.publish(js, bus.RUN_EVENTS_SUBJECT, event, msg_id or event.event_id)


def run_event(run: str, event_id: str, state: int = 0, *messages: str, **fields: Any) -> bus_pb2.RunEvent:
    return bus_pb2.RunEvent(
        run=run,
        event_id=event_id,
        state=state,  # type: ignore[arg-type]
        log_entries=[Entry(level=Entry.INFO, step="deploy", message=m) for m in messages],
        **fields,
    )

"""Integration harness: a fake config service (real gRPC), the real trigger app, stream readers."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from conveyor import bus
from conveyor.server import GrpcServer
from conveyor.v1 import bus_pb2, pipeline_pb2, pipeline_service_pb2, pipeline_service_pb2_grpc
from conveyor_trigger.adapters.registry_access import RegistryAccess
from conveyor_trigger.app import TriggerApp
from conveyor_trigger.settings import TriggerSettings

TOKEN = "integration-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PIPELINE_SERVICE = pipeline_service_pb2.DESCRIPTOR.services_by_name["PipelineService"].full_name


class FakePipelineService(pipeline_service_pb2_grpc.PipelineServiceServicer):
    """ListPipelines over an in-memory list (what the trigger's cache reads), paginated."""

    def __init__(self, pipelines: list[pipeline_pb2.Pipeline]) -> None:
        self.pipelines = pipelines
        self.calls = 0

    async def ListPipelines(  # noqa: N802
        self, request: pipeline_service_pb2.ListPipelinesRequest, context: grpc.aio.ServicerContext
    ) -> pipeline_service_pb2.ListPipelinesResponse:
        self.calls += 1
        start = int(request.page_token or 0)
        size = request.page_size or 50
        page = self.pipelines[start : start + size]
        more = start + size < len(self.pipelines)
        return pipeline_service_pb2.ListPipelinesResponse(
            pipelines=page, next_page_token=str(start + size) if more else "", total_size=len(self.pipelines)
        )


class FakeConfig:
    """An in-process config service we can stop and start again on the same port."""

    def __init__(self, pipelines: list[pipeline_pb2.Pipeline] | None = None) -> None:
        self.pipelines = list(pipelines or [])
        self.port = 0
        self.server: GrpcServer | None = None
        self.service: FakePipelineService | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeConfig:
        self.server = GrpcServer(f"127.0.0.1:{self.port}", [PIPELINE_SERVICE])
        self.service = FakePipelineService(self.pipelines)
        self.server.add(pipeline_service_pb2_grpc.add_PipelineServiceServicer_to_server, self.service)
        self.port = await self.server.start()
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(0)
            self.server = None


def trigger_env(nats_url: str, config_address: str, **extra: str) -> dict[str, str]:
    return {
        "CONVEYOR_NATS_URL": nats_url,
        "CONVEYOR_CONFIG_ADDR": config_address,
        "CONVEYOR_TRIGGER_ADDR": "127.0.0.1:0",
        "CONVEYOR_WEBHOOK_ADDR": "127.0.0.1:0",
        "CONVEYOR_WEBHOOK_TOKEN": TOKEN,
        "CONVEYOR_TRIGGER_SHUTDOWN_GRACE": "2s",
        **extra,
    }


@contextlib.asynccontextmanager
async def running_trigger(
    nats_url: str, config_address: str, *, registry: RegistryAccess | None = None, **env: str
) -> AsyncIterator[TriggerApp]:
    app = TriggerApp(TriggerSettings.from_env(trigger_env(nats_url, config_address, **env)), registry=registry)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]


async def post(
    app: TriggerApp,
    fmt: str,
    body: bytes,
    *,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | None = None,
    auth: bool = True,
) -> Reply:
    all_headers = {"Content-Type": "application/json", **(AUTH if auth else {}), **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{app.webhook_url}/webhooks/{fmt}", data=body, headers=all_headers, params=query) as response,
    ):
        text = await response.text()
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text
        return Reply(response.status, parsed, dict(response.headers))


async def get(app: TriggerApp, path: str) -> Reply:
    async with aiohttp.ClientSession() as session, session.get(f"{app.webhook_url}{path}") as response:
        return Reply(response.status, await response.text(), dict(response.headers))


@dataclass
class StoredMessage:
    subject: str
    msg_id: str
    data: bytes


async def stream_messages(js: JetStreamContext, stream: str) -> list[StoredMessage]:
    """Every message stored in `stream`, in order (empty when the stream does not exist yet)."""
    try:
        info = await js.stream_info(stream)
    except NotFoundError:
        return []
    messages = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        try:
            raw = await js.get_msg(stream, seq)
        except NotFoundError:
            continue
        headers = raw.headers or {}
        messages.append(StoredMessage(raw.subject or "", headers.get(bus.MSG_ID_HEADER, ""), raw.data or b""))
    return messages


async def pushes_in_stream(js: JetStreamContext) -> list[tuple[str, bus_pb2.ImagePushed]]:
    return [
        (m.msg_id, bus.decode(bus_pb2.ImagePushed, m.data))
        for m in await stream_messages(js, bus.REGISTRY_EVENTS_STREAM)
    ]


async def deploys_in_stream(js: JetStreamContext) -> list[tuple[str, bus_pb2.DeployRequested]]:
    return [
        (m.msg_id, bus.decode(bus_pb2.DeployRequested, m.data))
        for m in await stream_messages(js, bus.DEPLOY_REQUESTS_STREAM)
    ]


async def run_events_in_stream(js: JetStreamContext) -> list[tuple[str, bus_pb2.RunEvent]]:
    return [(m.msg_id, bus.decode(bus_pb2.RunEvent, m.data)) for m in await stream_messages(js, bus.RUN_EVENTS_STREAM)]


async def matcher_idle(js: JetStreamContext) -> None:
    """Assert (for `eventually`) that the matcher consumed and acked every registry event."""
    try:
        info = await js.consumer_info(bus.REGISTRY_EVENTS_STREAM, bus.TRIGGER_MATCHER_DURABLE)
    except NotFoundError:
        raise AssertionError("the matcher has not created its consumer yet") from None
    stream = await js.stream_info(bus.REGISTRY_EVENTS_STREAM)
    assert info.num_pending == 0 and info.num_ack_pending == 0, info
    assert info.ack_floor.stream_seq == stream.state.last_seq, (info.ack_floor, stream.state)


def metric_value(metrics_text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in metrics_text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric != name:
            continue
        found = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if found == wanted:
            return float(value)
    return 0.0

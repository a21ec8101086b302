"""The real `conveyor-trigger` process: SIGKILL between receiving and acking, restart, exactly once; SIGTERM."""

from __future__ import annotations

import asyncio
import json
import pathlib
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor import bus
from conveyor.v1 import bus_pb2
from tests.integration.trigger.trigger_harness import (
    AUTH,
    TOKEN,
    FakeConfig,
    deploys_in_stream,
    matcher_idle,
    pushes_in_stream,
    run_events_in_stream,
)
from tests.support.nats_server import NatsServer
from tests.support.net import eventually, free_port
from tests.support.procs import ServiceProcess, console_script
from tests.unit.trigger.trigger_factories import FILTER, pipeline

HOST = "registry.example.com:5000"
PIPELINES = 30
PUSHES = 12


def envelope() -> bytes:
    """One delivery of PUSHES tagged pushes; the last two are one image under two tags."""
    events = []
    for n in range(PUSHES):
        digest = f"sha256:{min(n, PUSHES - 2):064x}"
        events.append(
            {
                "id": f"kill-{n}",
                "timestamp": "2024-05-14T09:21:03Z",
                "action": "push",
                "target": {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest,
                    "repository": "team/app",
                    "tag": f"v{n}",
                    "url": f"http://{HOST}/v2/team/app/manifests/{digest}",
                },
                "request": {"id": f"req-{n}", "host": HOST, "method": "PUT"},
            }
        )
    return json.dumps({"events": events}).encode()


class Trigger:
    """The console script with fixed ports, restartable."""

    def __init__(self, nats_url: str, config_address: str, log_dir: pathlib.Path) -> None:
        self.grpc_address = f"127.0.0.1:{free_port()}"
        self.webhook_url = f"http://127.0.0.1:{free_port()}"
        self.base_env = {
            "CONVEYOR_NATS_URL": nats_url,
            "CONVEYOR_CONFIG_ADDR": config_address,
            "CONVEYOR_TRIGGER_ADDR": self.grpc_address,
            "CONVEYOR_WEBHOOK_ADDR": self.webhook_url.removeprefix("http://"),
            "CONVEYOR_WEBHOOK_TOKEN": TOKEN,
            "CONVEYOR_TRIGGER_ACK_WAIT": "2s",
            "CONVEYOR_LOG_LEVEL": "info",
        }
        self.log_dir = log_dir
        self.process: ServiceProcess | None = None

    async def start(self, *, wait: bool = True, **env: str) -> ServiceProcess:
        self.process = ServiceProcess(
            "conveyor-trigger", [console_script("conveyor-trigger")], {**self.base_env, **env}, self.log_dir
        ).start()
        if wait:
            # Off the event loop: the fake config service in this process must keep answering meanwhile.
            await asyncio.to_thread(self.process.wait_ready, self.grpc_address)
        return self.process

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()


@pytest.fixture
async def config() -> AsyncIterator[FakeConfig]:
    pipelines = [pipeline(f"p{n}", registry=HOST) for n in range(PIPELINES - 2)]
    pipelines += [
        pipeline("exact", registry=HOST, filter_type=FILTER.EXACT, value="v3"),
        pipeline("regex", registry=HOST, filter_type=FILTER.REGEX, value=r"v1\d"),
    ]
    fake = await FakeConfig(pipelines).start()
    yield fake
    await fake.stop()


def expected_deploys() -> int:
    # PUSHES - 1 distinct images for each ANY pipeline, "v3" for exact, "v10"/"v11" (one image) for regex.
    return (PIPELINES - 2) * (PUSHES - 1) + 1 + 1


async def test_sigkill_between_receiving_and_acking_then_restart_matches_every_push_exactly_once(
    nats_server: NatsServer, config: FakeConfig, nc: NATS, tmp_path: pathlib.Path
) -> None:
    js = nc.jetstream()
    trigger = Trigger(nats_server.url, config.address, tmp_path)

    # 1. Receive-only process: the webhook is stored and answered 200, nothing is matched or acked.
    await trigger.start(CONVEYOR_TRIGGER_MATCHER_ENABLED="false")
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{trigger.webhook_url}/webhooks/distribution", data=envelope(), headers=AUTH) as reply,
    ):
        assert reply.status == 200
        assert len((await reply.json())["stored"]) == PUSHES
    trigger.kill()
    assert len(await pushes_in_stream(js)) == PUSHES
    assert await deploys_in_stream(js) == []

    # 2. Matching process, SIGKILLed as soon as its first deploy request is seen: mid-way through.
    first_deploy = asyncio.Event()

    async def on_deploy(_msg: Msg) -> None:
        if not first_deploy.is_set():
            trigger.kill()
            first_deploy.set()

    subscription = await nc.subscribe(bus.DEPLOY_REQUESTED_SUBJECT, cb=on_deploy)
    await trigger.start(wait=False)  # it may be killed before a readiness probe would see it
    await asyncio.wait_for(first_deploy.wait(), 60)
    await subscription.unsubscribe()
    partial = await deploys_in_stream(js)
    assert 0 < len(partial) < expected_deploys(), "the kill must land while matching is in progress"

    # 3. Restarted: redelivery completes the work, and nothing is deployed twice.
    process = await trigger.start()
    await eventually(lambda: matcher_idle(js), timeout=60, interval=0.2)
    deploys = await deploys_in_stream(js)
    runs = [d.run for _, d in deploys]
    assert len(deploys) == expected_deploys()
    assert len(set(runs)) == len(runs)
    assert [msg_id for msg_id, _ in deploys] == runs
    per_pipeline = Counter(d.pipeline.name for _, d in deploys)
    assert per_pipeline["pipelines/p0"] == PUSHES - 1  # v10 and v11 are one image
    assert per_pipeline["pipelines/exact"] == 1 and per_pipeline["pipelines/regex"] == 1
    queued = [e for _, e in await run_events_in_stream(js) if e.state]
    assert sorted(e.run for e in queued) == sorted(runs)
    assert process.terminate() == 0


async def test_sigterm_exits_zero_after_finishing_its_work(
    nats_server: NatsServer, config: FakeConfig, nc: NATS, tmp_path: pathlib.Path
) -> None:
    trigger = Trigger(nats_server.url, config.address, tmp_path)
    process = await trigger.start()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{trigger.webhook_url}/webhooks/distribution", data=envelope(), headers=AUTH) as reply,
    ):
        assert reply.status == 200
    await eventually(lambda: matcher_idle(nc.jetstream()), timeout=60, interval=0.2)
    assert await asyncio.to_thread(process.terminate) == 0
    log = process.output()
    assert '"message": "stopping"' in log and '"message": "stopped"' in log
    assert len(await deploys_in_stream(nc.jetstream())) == expected_deploys()
    assert bus_pb2.ImagePushed  # the registry events stream was the input


async def test_invalid_settings_exit_2_with_a_readable_message(tmp_path: pathlib.Path) -> None:
    process = ServiceProcess(
        "conveyor-trigger-bad",
        [console_script("conveyor-trigger")],
        {"CONVEYOR_WEBHOOK_MAX_BODY": "huge", "CONVEYOR_TRIGGER_ADDR": "nowhere"},
        tmp_path,
    ).start()
    assert process.process is not None
    code = await asyncio.to_thread(process.process.wait, 30)
    assert code == 2
    output = process.output()
    assert "CONVEYOR_WEBHOOK_MAX_BODY='huge'" in output and "CONVEYOR_TRIGGER_ADDR='nowhere'" in output

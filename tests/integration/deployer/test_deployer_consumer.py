"""The deployer's JetStream edge with a real nats-server: ordering, supersede, acks, bad messages."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.retry import RetryPolicy
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer.adapters.jetstream import JetStreamDeployRequests, JetStreamRunEvents
from conveyor_deployer.edges.consumer import CONSUMER, DeployRequestConsumer
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.dispatcher import Dispatcher
from tests.integration.deployer.conftest import Stack, stored_run_events, terminal_states
from tests.support.kube import deploy_requested, patch_bodies
from tests.support.net import eventually

State = run_pb2.Run


@dataclass
class Deployer:
    js: JetStreamContext
    dispatcher: Dispatcher

    async def publish(self, message: bus_pb2.DeployRequested) -> None:
        await bus.publish(self.js, bus.DEPLOY_REQUESTED_SUBJECT, message, message.run)

    async def wait_terminal(self, run: str, timeout: float = 15.0) -> int:
        async def check() -> int:
            states = terminal_states(await stored_run_events(self.js), run)
            assert states, f"no terminal event for {run} yet"
            return states[0]

        return await eventually(check, timeout)


@pytest.fixture
async def deployer(stack: Stack, nc: NATS) -> AsyncIterator[Deployer]:
    js = nc.jetstream()
    await bus.ensure_streams(js)
    runner = DeployRunner(
        stack.api,
        JetStreamRunEvents(js),
        ["sandbox"],
        retry=RetryPolicy(initial=0.01, jitter=0.5, max_attempts=3),
        poll_interval=0.05,
    )
    dispatcher = Dispatcher(runner, max_concurrent=4, heartbeat_interval=0.5)
    requests = JetStreamDeployRequests(js, ack_wait=2.0, max_held=100)
    consumer = DeployRequestConsumer(requests, dispatcher, runner, max_held=100, default_rollout_timeout=30.0)
    await consumer.prepare()
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield Deployer(js, dispatcher)
    finally:
        stop.set()
        await task
        await dispatcher.shutdown(1.0)


def replaced_images(stack: Stack) -> list[str]:
    return [
        op["value"]
        for ops in patch_bodies(stack.sandbox, "Deployment", "demo", "web")
        for op in ops
        if op["op"] == "replace"
    ]


async def test_a_newer_request_supersedes_a_queued_older_one(stack: Stack, deployer: Deployer) -> None:
    stack.sandbox.auto_rollout = False  # the test completes each rollout itself
    t0 = dt.datetime.now(dt.UTC)
    first = deploy_requested(image="registry.example.com/demo/web:2.0.0", requested_at=t0)
    queued = deploy_requested(image="registry.example.com/demo/web:3.0.0", requested_at=t0 + dt.timedelta(seconds=1))
    newest = deploy_requested(image="registry.example.com/demo/web:4.0.0", requested_at=t0 + dt.timedelta(seconds=2))

    await deployer.publish(first)

    async def first_patched() -> None:
        assert replaced_images(stack) == ["registry.example.com/demo/web:2.0.0"]

    await eventually(first_patched)
    await deployer.publish(queued)
    await deployer.publish(newest)
    assert await deployer.wait_terminal(queued.run) == State.SUPERSEDED
    await stack.kube.complete_rollout("Deployment", "demo", "web")
    assert await deployer.wait_terminal(first.run) == State.SUCCEEDED

    async def newest_patched() -> None:
        assert replaced_images(stack)[-1] == "registry.example.com/demo/web:4.0.0"

    await eventually(newest_patched)
    await stack.kube.complete_rollout("Deployment", "demo", "web")
    assert await deployer.wait_terminal(newest.run) == State.SUCCEEDED

    # 3.0.0 was never applied; every run ended exactly once; every message was acked.
    assert replaced_images(stack) == ["registry.example.com/demo/web:2.0.0", "registry.example.com/demo/web:4.0.0"]
    events = await stored_run_events(deployer.js)
    for message in (first, queued, newest):
        assert len(terminal_states(events, message.run)) == 1
    superseded = next(e for e in events if e.run == queued.run and e.state == State.SUPERSEDED)
    assert newest.run in superseded.log_entries[0].message

    async def all_acked() -> None:
        info = await deployer.js.consumer_info(bus.DEPLOY_REQUESTS_STREAM, CONSUMER)
        assert info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(all_acked)


async def test_of_two_quick_requests_the_older_arriving_second_is_never_applied(
    stack: Stack, deployer: Deployer
) -> None:
    stack.sandbox.auto_rollout = False
    t0 = dt.datetime.now(dt.UTC)
    newer = deploy_requested(image="registry.example.com/demo/web:5.0.0", requested_at=t0)
    older = deploy_requested(image="registry.example.com/demo/web:4.5.0", requested_at=t0 - dt.timedelta(seconds=5))

    await deployer.publish(newer)
    await deployer.publish(older)

    assert await deployer.wait_terminal(older.run) == State.SUPERSEDED
    await eventually(lambda: _has_patch(stack))
    await stack.kube.complete_rollout("Deployment", "demo", "web")
    assert await deployer.wait_terminal(newer.run) == State.SUCCEEDED
    assert replaced_images(stack) == ["registry.example.com/demo/web:5.0.0"]


async def _has_patch(stack: Stack) -> None:
    assert replaced_images(stack)


async def test_runs_on_different_workloads_proceed_concurrently(stack: Stack, deployer: Deployer) -> None:
    stack.sandbox.auto_rollout = False
    web = deploy_requested(image="registry.example.com/demo/web:2.0.0")
    db = deploy_requested(
        pipeline="db", kind="StatefulSet", workload="db", container="db", image="registry.example.com/demo/db:17.0"
    )
    await deployer.publish(web)
    await deployer.publish(db)

    async def both_patched() -> None:
        assert patch_bodies(stack.sandbox, "Deployment", "demo", "web")
        assert patch_bodies(stack.sandbox, "StatefulSet", "demo", "db")

    # Neither rollout is complete, so both runs are in flight at once.
    await eventually(both_patched)
    await stack.kube.complete_rollout("Deployment", "demo", "web")
    await stack.kube.complete_rollout("StatefulSet", "demo", "db")
    assert await deployer.wait_terminal(web.run) == State.SUCCEEDED
    assert await deployer.wait_terminal(db.run) == State.SUCCEEDED


async def test_bad_messages_are_reported_or_dropped_and_the_consumer_goes_on(stack: Stack, deployer: Deployer) -> None:
    incomplete = deploy_requested(image="registry.example.com/demo/web:2.0.0")
    incomplete.pipeline.target.container = ""
    await deployer.js.publish(bus.DEPLOY_REQUESTED_SUBJECT, b"\xff\x00 not protobuf")
    await deployer.publish(incomplete)
    good = deploy_requested(image="registry.example.com/demo/web:2.2.0")
    await deployer.publish(good)

    assert await deployer.wait_terminal(incomplete.run) == State.FAILED
    assert await deployer.wait_terminal(good.run) == State.SUCCEEDED
    events = await stored_run_events(deployer.js)
    failed = next(e for e in events if e.run == incomplete.run)
    assert "pipeline.target.container is empty" in failed.error
    assert patch_bodies(stack.sandbox, "Deployment", "demo", "web")  # the good one was deployed

    async def all_settled() -> None:
        info = await deployer.js.consumer_info(bus.DEPLOY_REQUESTS_STREAM, CONSUMER)
        assert info.num_ack_pending == 0 and info.num_pending == 0

    await eventually(all_settled)

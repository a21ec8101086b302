"""Pushes are ordered by when they were accepted, never by when they were matched (issue 12, section 0).

The trigger's batch is cut short (SIGKILL); the rest of it comes back after the ack wait and is matched
then. The requests it produces go through the real trigger use case into the real deployer use cases:
the old push matched late must neither supersede nor overwrite the newer one.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from google.protobuf.message import Message

from conveyor import bus
from conveyor.names import new_id
from conveyor.retry import RetryPolicy
from conveyor.v1 import bus_pb2, event_service_pb2, run_pb2
from conveyor_deployer.domain.workloads import read_record
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.dispatcher import Dispatcher
from conveyor_deployer.usecases.requests import DeployRequest, parse_deploy_request
from conveyor_trigger.domain.matching import PipelineIndex
from conveyor_trigger.usecases.match import PushMatcher
from conveyor_trigger.usecases.ports import PushRecord
from tests.support.net import eventually
from tests.unit.deployer.fakes import CLUSTER, REF, FakeWorkloadApi, MemorySink, deployment, request, rolled_out
from tests.unit.deployer.test_deployer_dispatcher import FakeDelivery, GatedExecutor
from tests.unit.trigger.trigger_factories import DIGEST_A, DIGEST_B, pipeline, push

State = run_pb2.Run
T0 = dt.datetime(2026, 2, 1, 9, 0, tzinfo=dt.UTC)
OLD_IMAGE = "registry.example.com/team/app:v1"
NEW_IMAGE = "registry.example.com/team/app:v2"


class FakeBus:
    def __init__(self) -> None:
        self.stored: list[tuple[str, Message]] = []

    async def publish(self, subject: str, message: Message, msg_id: str) -> bool:
        self.stored.append((subject, copy.deepcopy(message)))
        return True

    def deploy_requests(self) -> list[bus_pb2.DeployRequested]:
        return [m for s, m in self.stored if s == bus.DEPLOY_REQUESTED_SUBJECT]  # type: ignore[misc]


class FakePushes:
    def __init__(self) -> None:
        self.records: dict[str, PushRecord] = {}

    async def claim(self, push_key: str, event_id: str, time_ms: int) -> PushRecord:
        return self.records.setdefault(push_key, PushRecord(push_key, new_id(), time_ms, event_id))

    async def mark_deployed(self, record: PushRecord, deployed: dict[str, str]) -> None:
        self.records[record.push_key].deployed.update(deployed)


class NoHistory:
    async def record(self, push: Any, decisions: Iterable[event_service_pb2.MatchDecision], receive_time: Any) -> None:
        pass

    async def list(self, request: Any) -> event_service_pb2.ListEventsResponse:
        return event_service_pb2.ListEventsResponse()


class Trigger:
    """The trigger's matcher over fakes; its clock is the time of matching."""

    def __init__(self) -> None:
        web = pipeline("web")
        web.target.cluster, web.target.namespace = REF.cluster, REF.namespace
        index, _ = PipelineIndex.build([web])
        self.bus = FakeBus()
        self.match_time = T0
        self.matcher = PushMatcher(
            index=lambda: index,
            publisher=self.bus,
            pushes=FakePushes(),
            events_log=NoHistory(),
            clock=lambda: self.match_time,
        )

    async def match(self, tag: str, digest: str, *, stored_at: dt.datetime, matched_at: dt.datetime) -> DeployRequest:
        self.match_time = matched_at
        event = push(tag, digest=digest, event_id=f"distribution:{tag}")
        await self.matcher.handle(event, stored_at=stored_at, fallback_event_id="bus:1", redelivered=True)
        message = self.bus.deploy_requests()[-1]
        return parse_deploy_request(message, default_rollout_timeout=30.0, now=matched_at)


async def old_push_matched_after_the_new_one() -> tuple[DeployRequest, DeployRequest]:
    """v1 accepted at T0, v2 a second later; v2 matched at once, v1 only after the 30 s ack wait."""
    trigger = Trigger()
    new = await trigger.match(
        "v2", DIGEST_B, stored_at=T0 + dt.timedelta(seconds=1), matched_at=T0 + dt.timedelta(seconds=1.2)
    )
    old = await trigger.match("v1", DIGEST_A, stored_at=T0, matched_at=T0 + dt.timedelta(seconds=31))
    return old, new


def deploy_runner(api: FakeWorkloadApi, sink: MemorySink) -> DeployRunner:
    return DeployRunner(
        api,
        sink,
        [CLUSTER],
        retry=RetryPolicy(initial=0.01, maximum=0.01, jitter=0.0, max_attempts=2),
        poll_interval=0.01,
    )


async def settled(delivery: FakeDelivery) -> None:
    async def check() -> None:
        assert delivery.settled

    await eventually(check, 5)


async def test_the_requested_time_is_when_the_push_was_accepted_not_when_it_was_matched() -> None:
    old, new = await old_push_matched_after_the_new_one()

    assert old.requested_at == T0 and new.requested_at == T0 + dt.timedelta(seconds=1)
    assert old.order < new.order


async def test_an_old_push_matched_late_does_not_overwrite_the_newer_one_that_succeeded() -> None:
    old, new = await old_push_matched_after_the_new_one()
    api = FakeWorkloadApi(deployment("registry.example.com/team/app:v0"))
    api.after_patch = lambda workload: workload.update(status=rolled_out(workload["metadata"]["generation"]))
    sink = MemorySink()
    dispatcher = Dispatcher(deploy_runner(api, sink), max_concurrent=4, heartbeat_interval=60)

    for message in (new, old):
        delivery = FakeDelivery()
        await dispatcher.submit(message, delivery)
        await settled(delivery)
        assert delivery.settled == ["ack"]

    states = {e.run: e.state for e in sink.events if e.state}
    assert states[new.run] == State.SUCCEEDED and states[old.run] == State.SUPERSEDED
    assert len(api.patches) == 1
    workload = api.objects[REF]
    assert workload["spec"]["template"]["spec"]["containers"][0]["image"] == NEW_IMAGE
    record = read_record(workload, "app")
    assert record is not None and record.run == new.run


async def test_an_old_push_matched_late_does_not_supersede_the_newer_one_waiting_behind_a_run() -> None:
    old, new = await old_push_matched_after_the_new_one()
    executor = GatedExecutor()
    dispatcher = Dispatcher(executor, max_concurrent=4, heartbeat_interval=60)
    other_container = replace(request(run_id="run-sidecar", container="sidecar"), target=new.target)
    try:
        await dispatcher.submit(other_container, FakeDelivery())  # keeps the workload busy: the next ones queue
        await dispatcher.submit(new, FakeDelivery())
        old_delivery = FakeDelivery()
        await dispatcher.submit(old, old_delivery)

        assert executor.superseded == [(old.run_id, new.run_id)]
        assert old_delivery.settled == ["ack"]
        executor.gate(other_container).set()
        executor.gate(new).set()

        async def new_finished() -> None:
            assert executor.finished == ["run-sidecar", new.run_id]

        await eventually(new_finished, 5)
        assert executor.started == ["run-sidecar", new.run_id]  # the old image never ran
    finally:
        for gate in executor.gates.values():
            gate.set()
        await dispatcher.shutdown(1.0)


async def test_the_order_survives_a_restart_within_one_millisecond() -> None:
    """A fresh deployer (restarted, or another replica) reads the order from the workload's deploy record."""
    api = FakeWorkloadApi(deployment("registry.example.com/team/app:v0"))
    api.after_patch = lambda workload: workload.update(status=rolled_out(workload["metadata"]["generation"]))
    newer = request(run_id="run-newer", image=NEW_IMAGE, requested_at=T0 + dt.timedelta(microseconds=900))
    older = request(run_id="run-older", image=OLD_IMAGE, requested_at=T0 + dt.timedelta(microseconds=400))

    first = await deploy_runner(api, MemorySink()).run(newer, 1)
    after_restart = await deploy_runner(api, MemorySink()).run(older, 1)

    assert (first.state, after_restart.state) == (State.SUCCEEDED, State.SUPERSEDED)
    assert len(api.patches) == 1

"""StartPipeline and RunService over real gRPC, with the real nats-server (DeployRequested, RunEvents)."""

from __future__ import annotations

import asyncio
import logging
import pathlib

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import bus
from conveyor.errors import field_violations
from conveyor.names import RunName
from conveyor.v1 import bus_pb2, pipeline_pb2, pipeline_service_pb2, run_service_pb2
from conveyor.v1.run_pb2 import Run, RunLogEntry as Entry
from conveyor_config.adapters.jetstream import JetStreamPublisher
from conveyor_config.adapters.storage import SqlStore, migrations
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.app import ConfigApp
from conveyor_config.domain import pipelines
from conveyor_config.usecases.outbox import OutboxRelay
from conveyor_config.usecases.ports import NewOutboxMessage
from tests.integration.config.conftest import Clients, StartConfig, connected
from tests.integration.config.support import (
    create_pipeline,
    deploy_requests,
    publish_event,
    rpc_error,
    run_event,
)
from tests.support.nats_server import NatsServer
from tests.support.net import eventually
from tests.unit.config.samples import sample_pipeline

Code = grpc.StatusCode
Start = pipeline_service_pb2.StartPipelineRequest
DIGEST = "sha256:" + "ab" * 32
OTHER_DIGEST = "sha256:" + "cd" * 32


async def tail(clients: Clients, name: str, follow: bool = False) -> list[Entry]:
    return [
        entry async for entry in clients.runs.TailRunLogs(run_service_pb2.TailRunLogsRequest(name=name, follow=follow))
    ]


async def set_options(clients: Clients, pipeline_id: str, **options: object) -> pipeline_pb2.Pipeline:
    patch = pipeline_pb2.Pipeline(name=f"pipelines/{pipeline_id}", options=pipeline_pb2.Options(**options))  # type: ignore[arg-type]
    paths = [f"options.{name}" for name in options]
    return await clients.pipelines.UpdatePipeline(
        pipeline_service_pb2.UpdatePipelineRequest(pipeline=patch, update_mask=field_mask_pb2.FieldMask(paths=paths))
    )


# --------------------------------------------------------------------------- StartPipeline


async def test_start_queues_a_manual_run_and_publishes_one_deploy_request(clients: Clients, nc: NATS) -> None:
    pipeline = await create_pipeline(clients, "web")
    run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1.2.3"))
    assert run.name.startswith("pipelines/web/runs/")
    assert (run.state, run.trigger, run.tag, run.digest) == (Run.QUEUED, Run.MANUAL, "v1.2.3", "")
    assert run.image == "demo.tencentcloudcr.com/team/app:v1.2.3"
    assert await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=run.name)) == run
    [entry] = await tail(clients, run.name)
    assert (entry.level, entry.step) == (Entry.INFO, "queue")
    assert "Started by hand: deploy demo.tencentcloudcr.com/team/app:v1.2.3" in entry.message

    js = nc.jetstream()

    async def published() -> list[tuple[str, bus_pb2.DeployRequested]]:
        found = await deploy_requests(js)
        assert len(found) == 1
        return found

    [(msg_id, request)] = await eventually(published)
    assert msg_id == run.name
    assert (request.run, request.image, request.tag, request.trigger) == (run.name, run.image, "v1.2.3", Run.MANUAL)
    assert request.pipeline == pipeline  # the pipeline as it was when the run was created
    assert request.requested_at == run.create_time


async def test_digest_is_pinned_only_when_the_pipeline_asks(clients: Clients) -> None:
    await create_pipeline(clients, "web")
    plain = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1", digest=DIGEST))
    assert (plain.image, plain.digest) == ("demo.tencentcloudcr.com/team/app:v1", DIGEST)
    await set_options(clients, "web", pin_digest=True)
    pinned = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1", digest=DIGEST))
    assert pinned.image == f"demo.tencentcloudcr.com/team/app:v1@{DIGEST}"


async def test_start_errors(clients: Clients) -> None:
    await create_pipeline(clients, "web")
    await create_pipeline(clients, "off", disabled=True)
    error = await rpc_error(clients.pipelines.StartPipeline(Start(name="pipelines/web")), Code.INVALID_ARGUMENT)
    assert [v.field for v in field_violations(error)] == ["tag"]
    error = await rpc_error(
        clients.pipelines.StartPipeline(Start(name="web", tag="-x", digest="md5:1")), Code.INVALID_ARGUMENT
    )
    assert [v.field for v in field_violations(error)] == ["name", "tag", "digest"]
    await rpc_error(clients.pipelines.StartPipeline(Start(name="pipelines/nope", tag="v1")), Code.NOT_FOUND)
    error = await rpc_error(
        clients.pipelines.StartPipeline(Start(name="pipelines/off", tag="v1")), Code.FAILED_PRECONDITION
    )
    assert "disabled" in (error.details() or "")
    listed = await clients.runs.ListRuns(run_service_pb2.ListRunsRequest(parent="pipelines/-"))
    assert list(listed.runs) == []


async def test_retried_start_with_request_id_returns_the_same_run_and_deploys_once(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    request = Start(name="pipelines/web", tag="v7", request_id="c3a3b3f4-0d63-4b7e-a5a5-1f0e9e2b6d77")
    first, second = await asyncio.gather(
        clients.pipelines.StartPipeline(request), clients.pipelines.StartPipeline(request)
    )
    third = await clients.pipelines.StartPipeline(request)
    assert first == second == third
    js = nc.jetstream()

    async def one_deploy() -> None:
        assert [msg_id for msg_id, _ in await deploy_requests(js)] == [first.name]

    await eventually(one_deploy)
    await asyncio.sleep(0.5)  # several outbox rounds later there is still exactly one
    await one_deploy()
    listed = await clients.runs.ListRuns(run_service_pb2.ListRunsRequest(parent="pipelines/web"))
    assert [r.name for r in listed.runs] == [first.name]


async def test_a_republished_outbox_row_is_stored_once(nc: NATS, tmp_path: pathlib.Path) -> None:
    """The relay retries after an ambiguous failure (stored, but no ack seen): the msg id dedupes it."""
    js = nc.jetstream()
    await bus.ensure_streams(js)
    url = f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}"
    await migrations.upgrade(url)
    database = open_database(url)
    try:
        store = SqlStore(database)
        pipeline = pipelines.check_pipeline(sample_pipeline())
        pipeline.name, pipeline.etag = "pipelines/web", "e1"
        await store.insert_pipeline(pipeline, None)
        run = Run(name="pipelines/web/runs/r1", state=Run.QUEUED, create_time=pipeline.create_time)
        deploy = bus_pb2.DeployRequested(run=run.name, pipeline=pipeline, image="x/y:v1")
        message = NewOutboxMessage(run.name, bus.DEPLOY_REQUESTED_SUBJECT, deploy.SerializeToString())
        await store.start_run(run, [], message, expected_etag="e1", request=None)

        class AckLost(JetStreamPublisher):
            async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
                await super().publish(subject, payload, msg_id)
                raise TimeoutError("ack lost")

        flaky = OutboxRelay(store, AckLost(nc, js), max_backoff=0.0)
        assert await flaky.flush() == 0
        assert await flaky.flush() == 0
        assert (await store.due_outbox(2**62, 10))[0].attempts == 2
        assert await OutboxRelay(store, JetStreamPublisher(nc, js)).flush() == 1
        assert await store.outbox_pending() == 0
        [(msg_id, stored)] = await deploy_requests(js)
        assert (msg_id, stored) == (run.name, deploy)
    finally:
        await database.dispose()


# --------------------------------------------------------------------------- image resolver


class ResolveFailure(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class FakeResolver:
    """An ImageResolver over a dict of `registry/repository:tag` -> digest."""

    def __init__(self, digests: dict[str, str], failure: ResolveFailure | None = None) -> None:
        self.digests = digests
        self.failure = failure
        self.calls: list[tuple[str, str, str]] = []

    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str:
        self.calls.append((registry, repository, reference))
        if self.failure is not None:
            raise self.failure
        key = f"{registry}/{repository}:{reference}"
        if key not in self.digests:
            raise ResolveFailure("not_found", f"manifest unknown: {key}")
        return self.digests[key]


async def test_resolver_fills_in_the_digest_and_rejects_unknown_tags(start_config: StartConfig) -> None:
    resolver = FakeResolver({"demo.tencentcloudcr.com/team/app:v1": DIGEST})
    service = await start_config(resolver=resolver)
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        await set_options(clients, "web", pin_digest=True)
        run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1"))
        assert (run.digest, run.image) == (DIGEST, f"demo.tencentcloudcr.com/team/app:v1@{DIGEST}")
        assert resolver.calls == [("demo.tencentcloudcr.com", "team/app", "v1")]
        messages = [e.message for e in await tail(clients, run.name)]
        assert messages[1] == f"demo.tencentcloudcr.com/team/app:v1 is {DIGEST}"

        error = await rpc_error(clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v9")), Code.NOT_FOUND)
        assert error.details() == "tag v9 does not exist in demo.tencentcloudcr.com/team/app"

        # A digest given by the caller wins over what the tag points to now, with a warning.
        chosen = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1", digest=OTHER_DIGEST))
        assert chosen.digest == OTHER_DIGEST
        warning = (await tail(clients, chosen.name))[1]
        assert warning.level == Entry.WARNING and f"now points to {DIGEST}" in warning.message


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info
    raise AssertionError(f"no ErrorInfo in {error!r}")


async def test_unreachable_registry_refuses_an_unverified_tag(start_config: StartConfig) -> None:
    resolver = FakeResolver({}, failure=ResolveFailure("unreachable", "connection refused"))
    service = await start_config(resolver=resolver)
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        error = await rpc_error(
            clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1")), Code.FAILED_PRECONDITION
        )
        assert error.details().startswith(
            "tag v1 of demo.tencentcloudcr.com/team/app could not be verified (unreachable: connection refused)"
        )
        assert "allow_unverified" in error.details()
        info = error_info(error)
        assert info.reason == "TAG_UNVERIFIED"
        assert dict(info.metadata) == {
            "registry": "demo.tencentcloudcr.com",
            "repository": "team/app",
            "tag": "v1",
            "cause": "unreachable: connection refused",
        }
        # Nothing was started, so nothing goes to a cluster.
        listed = await clients.runs.ListRuns(run_service_pb2.ListRunsRequest(parent="pipelines/web"))
        assert list(listed.runs) == []


async def test_allow_unverified_starts_by_tag_with_a_warning_and_an_audit_entry(
    start_config: StartConfig, caplog: pytest.LogCaptureFixture
) -> None:
    resolver = FakeResolver({}, failure=ResolveFailure("unreachable", "connection refused"))
    service = await start_config(resolver=resolver)
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        await set_options(clients, "web", pin_digest=True)
        with caplog.at_level(logging.INFO, logger="conveyor.audit"):
            run = await clients.pipelines.StartPipeline(
                Start(name="pipelines/web", tag="v1", allow_unverified=True, request_id="req-1")
            )
        assert (run.state, run.digest, run.image) == (Run.QUEUED, "", "demo.tencentcloudcr.com/team/app:v1")
        entries = await tail(clients, run.name)
        assert entries[1].level == Entry.WARNING and entries[1].step == "resolve-digest"
        assert entries[1].message.startswith("tag v1 was not verified: could not resolve the digest")
        assert "connection refused" in entries[1].message
        audit = [e for e in entries if e.step == "audit"]
        assert [e.message for e in audit] == [
            "method=StartPipeline pipeline=web tag=v1 allow_unverified=true request_id=req-1"
        ]
        [record] = [r for r in caplog.records if r.name == "conveyor.audit"]
        fields = {k: getattr(record, k) for k in ("method", "pipeline", "tag", "allow_unverified", "request_id")}
        assert fields == {
            "method": "StartPipeline",
            "pipeline": "web",
            "tag": "v1",
            "allow_unverified": "true",
            "request_id": "req-1",
        }
        # A verified start writes neither the warning nor an audit entry.
        resolver.failure = None
        resolver.digests["demo.tencentcloudcr.com/team/app:v1"] = DIGEST
        checked = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1"))
        verified = await tail(clients, checked.name)
        assert verified[1].step == "resolve-digest" and verified[1].message.endswith(f"is {DIGEST}")
        assert "audit" not in [e.step for e in verified]
        assert Entry.WARNING not in [e.level for e in verified]


async def test_a_tag_the_registry_does_not_know_is_not_found_even_with_allow_unverified(
    start_config: StartConfig,
) -> None:
    service = await start_config(resolver=FakeResolver({}))
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        error = await rpc_error(
            clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v9", allow_unverified=True)),
            Code.NOT_FOUND,
        )
        assert error.details() == "tag v9 does not exist in demo.tencentcloudcr.com/team/app"
        assert error_info(error).reason == "TAG_NOT_FOUND"


# --------------------------------------------------------------------------- RunService


async def finish(js: JetStreamContext, run: str, state: int = Run.SUCCEEDED, *messages: str) -> None:
    await publish_event(js, run_event(run, f"{run}:end", state, *messages))


async def wait_state(clients: Clients, run: str, state: int) -> Run:
    async def check() -> Run:
        current = await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=run))
        assert current.state == state
        return current

    return await eventually(check)


async def test_list_runs_newest_first_paginated_and_filtered(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    await create_pipeline(clients, "api")
    started = []
    for pipeline, tag in (("web", "v1"), ("api", "v1"), ("web", "v2"), ("web", "v3")):
        started.append(await clients.pipelines.StartPipeline(Start(name=f"pipelines/{pipeline}", tag=tag)))
    await finish(nc.jetstream(), started[0].name, Run.FAILED)
    await wait_state(clients, started[0].name, Run.FAILED)

    List = run_service_pb2.ListRunsRequest  # noqa: N806
    newest_first = [r.name for r in reversed(started)]
    seen, token = [], ""
    while True:
        page = await clients.runs.ListRuns(List(parent="pipelines/-", page_size=3, page_token=token))
        seen += [r.name for r in page.runs]
        token = page.next_page_token
        if not token:
            break
    assert seen == newest_first
    web = await clients.runs.ListRuns(List(parent="pipelines/web"))
    assert [r.name for r in web.runs] == [started[3].name, started[2].name, started[0].name]
    failed = await clients.runs.ListRuns(List(parent="pipelines/-", filter="state = FAILED"))
    assert [r.name for r in failed.runs] == [started[0].name]
    either = await clients.runs.ListRuns(List(parent="pipelines/web", filter="state = FAILED OR state = QUEUED"))
    assert len(either.runs) == 3

    await rpc_error(clients.runs.ListRuns(List(parent="pipelines/nope")), Code.NOT_FOUND)
    error = await rpc_error(clients.runs.ListRuns(List(parent="web")), Code.INVALID_ARGUMENT)
    assert [v.field for v in field_violations(error)] == ["parent"]
    error = await rpc_error(
        clients.runs.ListRuns(List(parent="pipelines/-", filter="state = DONE")), Code.INVALID_ARGUMENT
    )
    assert [v.field for v in field_violations(error)] == ["filter"]
    first = await clients.runs.ListRuns(List(parent="pipelines/-", page_size=1))
    error = await rpc_error(
        clients.runs.ListRuns(List(parent="pipelines/web", page_size=1, page_token=first.next_page_token)),
        Code.INVALID_ARGUMENT,
    )
    assert [v.field for v in field_violations(error)] == ["page_token"]


async def test_run_pagination_is_stable_under_inserts(clients: Clients) -> None:
    await create_pipeline(clients, "web")
    older = [await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag=f"v{i}")) for i in range(4)]
    List = run_service_pb2.ListRunsRequest  # noqa: N806
    first = await clients.runs.ListRuns(List(parent="pipelines/web", page_size=2))
    for i in range(3):  # newer runs arrive while the client pages
        await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag=f"new{i}"))
    second = await clients.runs.ListRuns(List(parent="pipelines/web", page_size=2, page_token=first.next_page_token))
    assert [r.name for r in first.runs] + [r.name for r in second.runs] == [r.name for r in reversed(older)]
    assert not second.next_page_token


async def test_get_and_delete_run(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1"))
    Delete = run_service_pb2.DeleteRunRequest  # noqa: N806
    error = await rpc_error(clients.runs.DeleteRun(Delete(name=run.name)), Code.FAILED_PRECONDITION)
    assert "has not finished" in (error.details() or "")
    await finish(nc.jetstream(), run.name, Run.SUCCEEDED)
    await wait_state(clients, run.name, Run.SUCCEEDED)
    await clients.runs.DeleteRun(Delete(name=run.name))
    await rpc_error(clients.runs.GetRun(run_service_pb2.GetRunRequest(name=run.name)), Code.NOT_FOUND)
    await rpc_error(clients.runs.DeleteRun(Delete(name=run.name)), Code.NOT_FOUND)
    error = await rpc_error(
        clients.runs.GetRun(run_service_pb2.GetRunRequest(name="pipelines/web")), Code.INVALID_ARGUMENT
    )
    assert [v.field for v in field_violations(error)] == ["name"]


async def test_delete_pipeline_with_active_run_then_after_it_finished(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1"))
    Delete = pipeline_service_pb2.DeletePipelineRequest  # noqa: N806
    error = await rpc_error(clients.pipelines.DeletePipeline(Delete(name="pipelines/web")), Code.FAILED_PRECONDITION)
    assert run.name in (error.details() or "")
    await finish(nc.jetstream(), run.name, Run.FAILED, "rollout timed out")
    await wait_state(clients, run.name, Run.FAILED)
    await clients.pipelines.DeletePipeline(Delete(name="pipelines/web"))
    # Its finished runs and their logs went with it.
    await rpc_error(clients.runs.GetRun(run_service_pb2.GetRunRequest(name=run.name)), Code.NOT_FOUND)
    await rpc_error(tail(clients, run.name), Code.NOT_FOUND)


async def test_tail_follow_streams_new_entries_and_ends_at_terminal(clients: Clients, nc: NATS) -> None:
    await create_pipeline(clients, "web")
    run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1.0.0"))
    js = nc.jetstream()
    received: list[str] = []

    async def follow() -> None:
        async for entry in clients.runs.TailRunLogs(run_service_pb2.TailRunLogsRequest(name=run.name, follow=True)):
            received.append(entry.message)

    follower = asyncio.create_task(follow())

    async def count(n: int) -> None:
        assert len(received) == n

    await eventually(lambda: count(1))
    await publish_event(js, run_event(run.name, "e1", Run.RUNNING, "resolving target", "patching"))
    await eventually(lambda: count(3))
    assert not follower.done()
    await publish_event(js, run_event(run.name, "e2", Run.SUCCEEDED, "rollout complete"))
    await asyncio.wait_for(follower, 10)
    assert received[1:] == ["resolving target", "patching", "rollout complete"]
    # Following a finished run returns its log and ends at once.
    assert [e.message for e in await tail(clients, run.name, follow=True)] == received
    await rpc_error(tail(clients, "pipelines/web/runs/nope"), Code.NOT_FOUND)


async def test_tail_follow_sees_entries_stored_by_another_replica(
    start_config: StartConfig, tmp_path: pathlib.Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    service = await start_config(database_url=url)
    other_replica = open_database(url)
    try:
        async with connected(service.address) as clients:
            await create_pipeline(clients, "web")
            run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1"))
            follower = asyncio.create_task(tail(clients, run.name, follow=True))
            await asyncio.sleep(0.3)
            store = SqlStore(other_replica)
            name = RunName("web", run.name.rsplit("/", 1)[1])
            done = run_event(run.name, "x1", Run.SUCCEEDED, "stored elsewhere")
            await store.apply_run_event(name, "x1", done, run.create_time)
            entries = await asyncio.wait_for(follower, 10)  # found by the poll, not a notification
            assert [e.message for e in entries][-1] == "stored elsewhere"
    finally:
        await other_replica.dispose()


# --------------------------------------------------------------------------- outbox across a NATS outage


async def test_deploy_request_is_delivered_after_nats_comes_back(
    clients: Clients, nats_server: NatsServer, config: ConfigApp
) -> None:
    await create_pipeline(clients, "web")
    nats_server.kill()
    run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1"))
    assert run.state == Run.QUEUED  # the start does not wait for the bus
    assert config.database is not None
    assert await SqlStore(config.database).outbox_pending() == 1
    await asyncio.sleep(0.5)
    nats_server.start()

    observer = await bus.connect(nats_server.url, "test-observer")
    try:
        js = observer.jetstream()

        async def delivered() -> None:
            assert [msg_id for msg_id, _ in await deploy_requests(js)] == [run.name]

        await eventually(delivered, timeout=30)
        assert config.database is not None
        assert await SqlStore(config.database).outbox_pending() == 0
    finally:
        await observer.close()


async def test_followers_are_told_to_reconnect_when_the_service_stops(start_config: StartConfig) -> None:
    service = await start_config(env={"CONVEYOR_CONFIG_SHUTDOWN_GRACE": "20s"})
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        run = await clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1.0.0"))
        follower = asyncio.create_task(tail(clients, run.name, follow=True))
        await asyncio.sleep(0.3)
        started = asyncio.get_running_loop().time()
        await service.stop()
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await asyncio.wait_for(follower, 10)
        assert error.value.code() == Code.UNAVAILABLE
        assert asyncio.get_running_loop().time() - started < 10  # not held for the whole grace period


class SlowResolver:
    """Holds StartPipeline in the registry lookup for `delay` seconds (an RPC in flight at SIGTERM)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.entered = asyncio.Event()

    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str:
        self.entered.set()
        await asyncio.sleep(self.delay)
        return DIGEST


async def test_stop_drains_in_flight_rpcs_then_flushes_the_outbox_then_nats(
    start_config: StartConfig, nc: NATS
) -> None:
    """Stop stages in order: no new calls, the call in flight finishes, its DeployRequested is published."""
    resolver = SlowResolver(delay=1.0)
    service = await start_config(resolver=resolver, env={"CONVEYOR_CONFIG_SHUTDOWN_GRACE": "5s"})
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        in_flight = asyncio.ensure_future(clients.pipelines.StartPipeline(Start(name="pipelines/web", tag="v1")))
        await resolver.entered.wait()
        started = asyncio.get_running_loop().time()
        stopping = asyncio.create_task(service.stop())
        await asyncio.sleep(0.2)
        # Past not_serving and stop_accepting: a new call is refused while the one in flight goes on.
        late = clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web"))
        await rpc_error(late, Code.UNAVAILABLE)
        run = await in_flight
        await stopping
    assert run.digest == DIGEST
    assert asyncio.get_running_loop().time() - started < service.shutdown_plan.total
    # Published by the relay's last flush before NATS was drained.
    [(msg_id, request)] = await deploy_requests(nc.jetstream())
    assert (msg_id, request.digest) == (run.name, DIGEST)
    assert service.nc is not None and service.nc.is_closed

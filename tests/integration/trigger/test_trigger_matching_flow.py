"""Webhook -> stream -> matcher -> RunEvent + DeployRequested, with the real app and a real nats-server."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator

import grpc
import pytest
from nats.aio.client import Client as NATS

from conveyor import bus, dead_letters, errors
from conveyor.v1 import bus_pb2, event_service_pb2, event_service_pb2_grpc, pipeline_pb2, run_pb2
from conveyor_trigger.adapters.registry_access import RegistryAccess
from conveyor_trigger.app import TriggerApp
from conveyor_trigger.edges.matcher_consumer import MatcherConsumer
from tests.integration.trigger.trigger_harness import (
    FakeConfig,
    deploys_in_stream,
    get,
    matcher_idle,
    metric_value,
    post,
    run_events_in_stream,
    running_trigger,
)
from tests.support.nats_server import NatsServer
from tests.support.net import eventually, free_port
from tests.unit.trigger.trigger_factories import DIGEST_A, DIGEST_B, FILTER, pipeline

Outcome = event_service_pb2.MatchDecision.Outcome
HOST = "registry.example.com:5000"


def distribution_push(*events: tuple[str, str, str, str]) -> bytes:
    """An envelope of tagged manifest pushes: (event id, repository, tag, digest)."""
    return json.dumps(
        {
            "events": [
                {
                    "id": event_id,
                    "timestamp": "2024-05-14T09:21:03Z",
                    "action": "push",
                    "target": {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "repository": repository,
                        "tag": tag,
                        "url": f"http://{HOST}/v2/{repository}/manifests/{digest}",
                    },
                    "request": {"id": "r", "host": HOST, "method": "PUT"},
                    "actor": {"name": "ci"},
                }
                for event_id, repository, tag, digest in events
            ]
        }
    ).encode()


def wait_idle(nc: NATS):  # type: ignore[no-untyped-def]
    async def check() -> None:
        await matcher_idle(nc.jetstream())

    return check


async def events(app: TriggerApp, **request: object) -> event_service_pb2.ListEventsResponse:
    async with grpc.aio.insecure_channel(app.grpc_address) as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        return await stub.ListEvents(event_service_pb2.ListEventsRequest(**request))  # type: ignore[arg-type]


@pytest.fixture
async def config() -> AsyncIterator[FakeConfig]:
    fake = FakeConfig()
    yield fake
    await fake.stop()


async def test_many_pipelines_publish_exactly_the_expected_runs(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    pipelines = [
        pipeline("web", registry=HOST, repository="team/app"),
        pipeline(
            "prod", registry=HOST.upper(), repository="team/app", filter_type=FILTER.REGEX, value=r"v\d+\.\d+\.\d+"
        ),
        pipeline(
            "exact", registry=HOST, repository="team/app", filter_type=FILTER.EXACT, value="v1.0.0", pin_digest=True
        ),
        pipeline("broken", registry=HOST, repository="team/app", filter_type=FILTER.REGEX, value="(v1"),
        pipeline("builds", registry=HOST, repository="team/app", origin=pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD),
        pipeline("off", registry=HOST, repository="team/app", disabled=True),
        # Hundreds of pipelines of other repositories must not change anything.
        *(
            pipeline(f"other-{n}", registry=HOST, repository=f"team/svc{n}", filter_type=FILTER.EXACT, value="x")
            for n in range(300)
        ),
    ]
    config.pipelines[:] = pipelines
    await config.start()
    async with running_trigger(nats_server.url, config.address) as app:
        body = distribution_push(
            ("e1", "team/app", "v1.0.0", DIGEST_A),
            ("e2", "team/app", "dev-7", DIGEST_B),
            ("e3", "team/nobody", "v1", DIGEST_A),
        )
        assert (await post(app, "distribution", body)).status == 200
        await eventually(wait_idle(nc))

        js = nc.jetstream()
        deploys = await deploys_in_stream(js)
        got = sorted((d.pipeline.name, d.image) for _, d in deploys)
        assert got == [
            ("pipelines/exact", f"{HOST}/team/app:v1.0.0@{DIGEST_A}"),
            ("pipelines/prod", f"{HOST.lower()}/team/app:v1.0.0"),
            ("pipelines/web", f"{HOST}/team/app:dev-7"),
            ("pipelines/web", f"{HOST}/team/app:v1.0.0"),
        ]
        for msg_id, deploy in deploys:
            assert msg_id == deploy.run and deploy.trigger == run_pb2.Run.PUSH
            assert deploy.run.startswith(deploy.pipeline.name + "/runs/")
        run_events = await run_events_in_stream(js)
        assert sorted(e.run for _, e in run_events) == sorted(d.run for _, d in deploys)
        for msg_id, event in run_events:
            assert event.state == run_pb2.Run.QUEUED and msg_id == event.event_id
            assert msg_id == event.run.rsplit("/", 1)[1] + ":queued"
            assert "matched " in event.log_entries[0].message

        # The "why not" answer, newest first.
        listed = await events(app)
        assert [e.push.tag for e in listed.events] == ["v1", "dev-7", "v1.0.0"]
        nobody, dev, release = listed.events
        assert [(d.outcome, d.reason) for d in nobody.decisions] == [
            (Outcome.NO_PIPELINE, f"no pipeline watches {HOST}/team/nobody")
        ]
        by_pipeline = {d.pipeline: d for d in dev.decisions}
        assert by_pipeline["pipelines/web"].outcome == Outcome.MATCHED and by_pipeline["pipelines/web"].run
        assert by_pipeline["pipelines/prod"].outcome == Outcome.TAG_MISMATCH
        assert by_pipeline["pipelines/prod"].reason == r"tag 'dev-7' does not match regex v\d+\.\d+\.\d+"
        assert by_pipeline["pipelines/exact"].reason == "tag 'dev-7' is not the exact tag 'v1.0.0'"
        assert by_pipeline["pipelines/broken"].outcome == Outcome.TAG_MISMATCH
        assert "does not compile" in by_pipeline["pipelines/broken"].reason
        assert by_pipeline["pipelines/builds"].outcome == Outcome.ORIGIN_MISMATCH
        assert by_pipeline["pipelines/off"].outcome == Outcome.PIPELINE_DISABLED
        assert len(dev.decisions) == 6
        assert {d.pipeline for d in release.decisions if d.outcome == Outcome.MATCHED} == {
            "pipelines/web",
            "pipelines/prod",
            "pipelines/exact",
        }
        filtered = await events(app, registry=HOST, repository="team/nobody")
        assert [e.push.event_id for e in filtered.events] == ["distribution:e3"]
        page = await events(app, page_size=2)
        rest = await events(app, page_size=2, page_token=page.next_page_token)
        assert [e.push.tag for e in rest.events] == ["v1.0.0"] and rest.next_page_token == ""


async def test_same_digest_under_two_tags_deploys_once_per_pipeline(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    config.pipelines[:] = [
        pipeline("any-a", registry=HOST),
        pipeline("any-b", registry=HOST),
        pipeline("latest", registry=HOST, filter_type=FILTER.EXACT, value="latest"),
    ]
    await config.start()
    async with running_trigger(nats_server.url, config.address) as app:
        await post(app, "distribution", distribution_push(("t1", "team/app", "v1.4.0", DIGEST_A)))
        await post(app, "distribution", distribution_push(("t2", "team/app", "latest", DIGEST_A)))
        await eventually(wait_idle(nc))
        deploys = await deploys_in_stream(nc.jetstream())
        assert Counter(d.pipeline.name for _, d in deploys) == {
            "pipelines/any-a": 1,
            "pipelines/any-b": 1,
            "pipelines/latest": 1,
        }
        listed = await events(app)
        second = {d.pipeline: d for d in listed.events[0].decisions}
        first = {d.pipeline: d for d in listed.events[1].decisions}
        assert second["pipelines/any-a"].outcome == Outcome.DUPLICATE
        assert second["pipelines/any-a"].run == first["pipelines/any-a"].run
        assert second["pipelines/latest"].outcome == Outcome.MATCHED
        # All runs of one push share the push id: runs of any-a/latest differ only by pipeline.
        runs = {d.run for _, d in deploys}
        assert len(runs) == 3


async def test_semver_pipeline_deploys_a_matching_push_and_not_an_excluded_one(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    release = pipeline("release", registry=HOST, filter_type=FILTER.SEMVER, value="^1.2")
    release.source.tag_filter.exclusions.extend(["*-bad", "regex:v1\\.9\\..*"])
    config.pipelines[:] = [release]
    await config.start()
    async with running_trigger(nats_server.url, config.address) as app:
        body = distribution_push(
            ("s1", "team/app", "v1.4.0", DIGEST_A),
            ("s2", "team/app", "1.5.0-bad", DIGEST_B),
            ("s3", "team/app", "v1.9.1", DIGEST_B),
            ("s4", "team/app", "1.6.0-rc.1", DIGEST_B),
            ("s5", "team/app", "2.0.0", DIGEST_B),
        )
        assert (await post(app, "distribution", body)).status == 200
        await eventually(wait_idle(nc))
        deploys = await deploys_in_stream(nc.jetstream())
        assert [d.image for _, d in deploys] == [f"{HOST}/team/app:v1.4.0"]
        decisions = {e.push.tag: e.decisions[0] for e in (await events(app)).events}
        assert decisions["v1.4.0"].outcome == Outcome.MATCHED
        assert decisions["1.5.0-bad"].outcome == Outcome.TAG_MISMATCH
        assert decisions["1.5.0-bad"].reason == "tag '1.5.0-bad' excluded by *-bad"
        assert decisions["v1.9.1"].reason == "tag 'v1.9.1' excluded by regex:v1\\.9\\..*"
        assert decisions["1.6.0-rc.1"].reason == (
            "tag '1.6.0-rc.1' is a pre-release and the filter excludes pre-releases"
        )
        assert decisions["2.0.0"].reason == "tag '2.0.0' does not satisfy semver ^1.2"


async def test_redelivery_after_publishing_but_before_ack_publishes_nothing_new(
    nats_server: NatsServer, config: FakeConfig, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The crash window, made deterministic: the first delivery of every event does all its work and is
    then handed back instead of acked (as if the process died right before the ack)."""
    config.pipelines[:] = [pipeline(f"p{n}", registry=HOST) for n in range(5)]
    await config.start()
    real_handle = MatcherConsumer.handle

    async def crash_before_ack(self: MatcherConsumer, msg) -> bus.Outcome:  # type: ignore[no-untyped-def]
        outcome = await real_handle(self, msg)
        return bus.Outcome.NAK if msg.metadata.num_delivered == 1 else outcome

    monkeypatch.setattr(MatcherConsumer, "handle", crash_before_ack)
    async with running_trigger(nats_server.url, config.address) as app:
        body = distribution_push(*((f"r{n}", "team/app", f"v{n}", f"sha256:{n:064x}") for n in range(4)))
        await post(app, "distribution", body)
        await eventually(wait_idle(nc), timeout=30)
        info = await nc.jetstream().consumer_info(bus.REGISTRY_EVENTS_STREAM, bus.TRIGGER_MATCHER_DURABLE)
        assert info.num_redelivered == 0 and info.delivered.consumer_seq == 8  # every event delivered twice
        deploys = await deploys_in_stream(nc.jetstream())
        assert len(deploys) == 20 and len({d.run for _, d in deploys}) == 20
        assert len(await run_events_in_stream(nc.jetstream())) == 20
        listed = await events(app)
        assert {d.outcome for e in listed.events for d in e.decisions} == {Outcome.MATCHED}


async def test_bus_events_from_platform_services_and_undecodable_messages(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    config.pipelines[:] = [
        pipeline("built", registry="registry.example.com", origin=pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD),
        pipeline("pushed", registry="registry.example.com", origin=pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH),
    ]
    await config.start()
    async with running_trigger(nats_server.url, config.address) as app:
        js = nc.jetstream()
        before = (await get(app, "/metrics")).body
        await js.publish(bus.IMAGE_PUSHED_SUBJECT, b"\xff\x00 not a protobuf", headers={bus.MSG_ID_HEADER: "junk"})
        invalid = bus_pb2.ImagePushed(event_id="build:0", registry="registry.example.com", repository="team/app")
        await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, invalid, invalid.event_id)
        build = bus_pb2.ImagePushed(
            event_id="build:42",
            registry="Registry.Example.com",
            repository="team/app",
            tag="b42",
            digest=DIGEST_B,
            origin=pipeline_pb2.IMAGE_ORIGIN_PLATFORM_BUILD,
            source_format="build",
        )
        await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, build, build.event_id)
        await eventually(wait_idle(nc))
        deploys = await deploys_in_stream(js)
        assert [(d.pipeline.name, d.event_id) for _, d in deploys] == [("pipelines/built", "build:42")]
        listed = await events(app)
        (event,) = listed.events
        assert {d.pipeline: d.outcome for d in event.decisions} == {
            "pipelines/built": Outcome.MATCHED,
            "pipelines/pushed": Outcome.ORIGIN_MISMATCH,
        }
        after = (await get(app, "/metrics")).body
        name = "conveyor_trigger_bus_rejected_total"
        for reason in ("undecodable", "invalid"):
            labels = {"subject": bus.IMAGE_PUSHED_SUBJECT, "reason": reason}
            assert metric_value(after, name, **labels) - metric_value(before, name, **labels) == 1, reason


async def test_a_push_with_an_out_of_range_time_is_dead_lettered_and_list_events_keeps_working(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    """The defect: a pushed_at with nanos >= 1e9 was stored in the history, and every ListEvents after it
    failed to format its response."""
    config.pipelines[:] = [pipeline("web", registry=HOST)]
    await config.start()
    async with running_trigger(nats_server.url, config.address) as app:
        js = nc.jetstream()
        before = (await get(app, "/metrics")).body
        bad = bus_pb2.ImagePushed(event_id="bad-time", registry=HOST, repository="team/app", tag="v1", digest=DIGEST_A)
        bad.pushed_at.seconds, bad.pushed_at.nanos = 1_700_000_000, 1_000_000_000
        good = bus_pb2.ImagePushed(event_id="good", registry=HOST, repository="team/app", tag="v2", digest=DIGEST_B)
        for push in (bad, good):
            await bus.publish(js, bus.IMAGE_PUSHED_SUBJECT, push, push.event_id)
        await eventually(wait_idle(nc))
        listed = await events(app)
        assert [e.push.event_id for e in listed.events] == ["good"]
        assert [d.pipeline.name for _, d in await deploys_in_stream(js)] == ["pipelines/web"]
        (letter,) = await dead_letters.read(js, consumer=bus.TRIGGER_MATCHER_DURABLE)
        assert (letter.msg_id, letter.reason) == ("bad-time", dead_letters.INVALID)
        assert "pushed_at: nanos 1000000000 is out of range" in letter.error
        after = (await get(app, "/metrics")).body
        labels = {"subject": bus.IMAGE_PUSHED_SUBJECT, "reason": "invalid"}
        name = "conveyor_trigger_bus_rejected_total"
        assert metric_value(after, name, **labels) - metric_value(before, name, **labels) == 1


async def test_nats_reconnect_triggers_a_full_pipeline_resync(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    config.pipelines[:] = [pipeline("a", registry=HOST)]
    await config.start()
    async with running_trigger(nats_server.url, config.address, CONVEYOR_TRIGGER_RESYNC_INTERVAL="1h") as app:
        await eventually(_loaded(app))
        # Created while the trigger's NATS connection is down: its change notice is lost.
        nats_server.stop()
        config.pipelines.append(pipeline("b", registry=HOST, repository="team/b"))
        nats_server.start()

        async def resynced() -> None:
            assert app.cache is not None and app.cache.current().get("pipelines/b") is not None

        await eventually(resynced, timeout=30)


async def test_pipeline_change_notices_are_followed_without_waiting_for_a_resync(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    await config.start()
    async with running_trigger(nats_server.url, config.address, CONVEYOR_TRIGGER_RESYNC_INTERVAL="1h") as app:
        await eventually(_loaded(app))
        created = pipeline("late", registry=HOST)
        notice = bus_pb2.PipelineChanged(change=bus_pb2.PipelineChanged.CREATED, pipeline=created)
        await nc.publish(bus.PIPELINE_CHANGED_SUBJECT, notice.SerializeToString())
        await nc.flush()

        async def known() -> None:
            assert app.cache is not None and app.cache.current().get("pipelines/late") is not None

        await eventually(known)
        await post(app, "distribution", distribution_push(("n1", "team/app", "v1", DIGEST_A)))
        await eventually(wait_idle(nc))
        assert [d.pipeline.name for _, d in await deploys_in_stream(nc.jetstream())] == ["pipelines/late"]


def _loaded(app: TriggerApp):  # type: ignore[no-untyped-def]
    async def check() -> None:
        assert app.cache is not None and app.cache.is_loaded()

    return check


async def test_config_down_matching_continues_from_cache_and_picks_up_a_pipeline_created_meanwhile(
    nats_server: NatsServer, nc: NATS
) -> None:
    config = FakeConfig([pipeline("old", registry=HOST, repository="team/app")])
    await config.start()
    try:
        async with running_trigger(nats_server.url, config.address, CONVEYOR_TRIGGER_RESYNC_INTERVAL="300ms") as app:
            await post(app, "distribution", distribution_push(("c1", "team/app", "v1", DIGEST_A)))
            await eventually(wait_idle(nc))

            await config.stop()
            # While config is down: pushes still match the cached pipeline.
            await post(app, "distribution", distribution_push(("c2", "team/app", "v2", DIGEST_B)))
            await eventually(wait_idle(nc))
            # A pipeline is created while the trigger cannot see config (it misses the notice).
            config.pipelines.append(pipeline("new", registry=HOST, repository="team/new"))
            await post(app, "distribution", distribution_push(("c3", "team/new", "v1", DIGEST_A)))
            await eventually(wait_idle(nc))
            names = [d.pipeline.name for _, d in await deploys_in_stream(nc.jetstream())]
            assert names == ["pipelines/old", "pipelines/old"]
            (latest,) = (await events(app, page_size=1)).events
            assert latest.decisions[0].outcome == Outcome.NO_PIPELINE

            await config.start()  # same port, now with the new pipeline

            async def picked_up() -> None:
                assert app.cache is not None and app.cache.current().get("pipelines/new") is not None

            await eventually(picked_up, timeout=30)
            await post(app, "distribution", distribution_push(("c4", "team/new", "v2", DIGEST_B)))
            await eventually(wait_idle(nc))
            names = [d.pipeline.name for _, d in await deploys_in_stream(nc.jetstream())]
            assert names == ["pipelines/old", "pipelines/old", "pipelines/new"]
    finally:
        await config.stop()


async def test_matcher_waits_for_the_first_pipeline_load(nats_server: NatsServer, nc: NATS) -> None:
    """Config down at start: pushes are stored and wait; nothing is matched against an empty cache."""
    config = FakeConfig([pipeline("web", registry=HOST)])
    config.port = free_port()
    try:
        async with running_trigger(nats_server.url, config.address) as app:
            assert (
                await post(app, "distribution", distribution_push(("w1", "team/app", "v1", DIGEST_A)))
            ).status == 200
            await asyncio.sleep(1.0)
            assert (await events(app)).events == []  # not matched (and not acked as NO_PIPELINE)
            await config.start()
            await eventually(wait_idle(nc), timeout=30)
            assert [d.pipeline.name for _, d in await deploys_in_stream(nc.jetstream())] == ["pipelines/web"]
    finally:
        await config.stop()


class FakeRegistry:
    def __init__(self) -> None:
        self.closed = False

    async def list_tags(
        self, registry: str, repository: str, *, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[str], str]:
        if repository == "team/missing":
            error = RuntimeError("repository team/missing not found")
            error.kind = "not_found"  # type: ignore[attr-defined]
            raise error
        return [f"{registry}/{repository}:v1", "v2"][:page_size], ""

    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str:
        return DIGEST_A

    async def close(self) -> None:
        self.closed = True


async def test_list_tags_over_grpc(nats_server: NatsServer, config: FakeConfig) -> None:
    config.pipelines[:] = [pipeline("web", registry="Index.Docker.io", repository="nginx")]
    await config.start()
    registry = FakeRegistry()
    access = RegistryAccess(lister=registry, resolver=registry, close=registry.close)
    async with running_trigger(nats_server.url, config.address, registry=access) as app:
        await eventually(_loaded(app))
        async with grpc.aio.insecure_channel(app.grpc_address) as channel:
            stub = event_service_pb2_grpc.EventServiceStub(channel)
            reply = await stub.ListTags(
                event_service_pb2.ListTagsRequest(pipeline="pipelines/web", include_digests=True)
            )
            assert [(t.tag, t.digest) for t in reply.tags] == [
                ("docker.io/library/nginx:v1", DIGEST_A),
                ("v2", DIGEST_A),
            ]
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.ListTags(event_service_pb2.ListTagsRequest(registry="r.io", repository="team/missing"))
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.aio.AioRpcError) as invalid:
                await stub.ListTags(event_service_pb2.ListTagsRequest(registry="r.io"))
            assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert [v.field for v in errors.field_violations(invalid.value)] == ["repository"]
            with pytest.raises(grpc.aio.AioRpcError) as bad_token:
                await stub.ListEvents(event_service_pb2.ListEventsRequest(page_token="nope"))
            assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert registry.closed

"""The ListEvents history in JetStream: bounded, newest first, filters, stable pagination, shared by every
replica and kept across restarts (a real nats-server)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator

import grpc
import nats
import pytest
from nats.aio.client import Client as NATS

from conveyor import subjects
from conveyor.aip.page_tokens import INVALID_TOKEN_MESSAGE, OTHER_QUERY_MESSAGE, PageTokenCodec
from conveyor.errors import InvalidArgument
from conveyor.v1 import event_service_pb2, event_service_pb2_grpc
from conveyor_trigger.adapters.event_history import JetStreamEventHistory, history_subject
from conveyor_trigger.app import TriggerApp
from tests.integration.trigger.trigger_harness import FakeConfig, matcher_idle, post, running_trigger
from tests.support.nats_server import NatsServer
from tests.support.net import eventually
from tests.unit.trigger.trigger_factories import pipeline, push

NOW = dt.datetime(2024, 5, 14, tzinfo=dt.UTC)
KEY = PageTokenCodec(b"k" * 32)
Decision = event_service_pb2.MatchDecision
Request = event_service_pb2.ListEventsRequest


async def open_history(js: object, *, capacity: int = 1000, max_age: float = 3600.0, codec: PageTokenCodec = KEY):
    return await JetStreamEventHistory.open(js, codec=codec, capacity=capacity, max_age=max_age)  # type: ignore[arg-type]


async def record(history: JetStreamEventHistory, n: int, outcome: int = Decision.NO_PIPELINE, **kw: object) -> None:
    decision = Decision(outcome=outcome, reason="why")  # type: ignore[arg-type]
    await history.record(push(f"v{n}", event_id=f"e{n}", **kw), [decision], NOW + dt.timedelta(seconds=n))  # type: ignore[arg-type]


def tags(response: event_service_pb2.ListEventsResponse) -> list[str]:
    return [event.push.tag for event in response.events]


async def rejection(history: JetStreamEventHistory, request: event_service_pb2.ListEventsRequest) -> str:
    with pytest.raises(InvalidArgument) as error:
        await history.list(request)
    [violation] = error.value.violations
    return f"{violation.field}: {violation.description}"


async def test_newest_first_and_bounded_by_the_retention_limits(nc: NATS) -> None:
    history = await open_history(nc.jetstream(), capacity=3, max_age=90.0)
    for n in range(5):
        await record(history, n)
    response = await history.list(Request())
    assert tags(response) == ["v4", "v3", "v2"]
    assert response.events[0].receive_time.ToDatetime(dt.UTC) == NOW + dt.timedelta(seconds=4)
    assert response.events[0].decisions[0].outcome == Decision.NO_PIPELINE
    assert response.next_page_token == ""
    config = (await nc.jetstream().stream_info(subjects.EVENT_HISTORY_STREAM)).config
    assert (config.max_msgs, config.max_age, config.max_msgs_per_subject) == (3, 90.0, 1)


async def test_pagination_is_stable_while_events_arrive(nc: NATS) -> None:
    history = await open_history(nc.jetstream())
    for n in range(5):
        await record(history, n)
    first = await history.list(Request(page_size=2))
    assert tags(first) == ["v4", "v3"] and first.next_page_token
    await record(history, 5)  # arrives between pages
    second = await history.list(Request(page_size=2, page_token=first.next_page_token))
    assert tags(second) == ["v2", "v1"]
    third = await history.list(Request(page_size=2, page_token=second.next_page_token))
    assert tags(third) == ["v0"] and third.next_page_token == ""


async def test_filters_by_registry_repository_tag_and_decision(nc: NATS) -> None:
    history = await open_history(nc.jetstream())
    await record(history, 1, registry="docker.io", repository="library/nginx")
    await record(history, 2, Decision.MATCHED, registry="registry.example.com", repository="team/app")
    await record(history, 3, Decision.TAG_MISMATCH, registry="registry.example.com", repository="team/other")
    await record(history, 4, Decision.MATCHED, registry="registry.example.com", repository="team/other")
    assert tags(await history.list(Request(registry="REGISTRY.example.com"))) == ["v4", "v3", "v2"]
    assert tags(await history.list(Request(registry="index.docker.io", repository="nginx"))) == ["v1"]
    assert tags(await history.list(Request(repository="team/app"))) == ["v2"]
    assert tags(await history.list(Request(tag="v3"))) == ["v3"]
    assert tags(await history.list(Request(decision=Decision.MATCHED))) == ["v4", "v2"]
    both = Request(repository="team/other", decision=Decision.MATCHED, page_size=1)
    page = await history.list(both)
    assert tags(page) == ["v4"] and page.next_page_token == ""
    assert await rejection(history, Request(decision=99)) == (  # type: ignore[arg-type]
        "decision: 99 is not a known outcome (OUTCOME_UNSPECIFIED, MATCHED, TAG_MISMATCH, ORIGIN_MISMATCH, "
        "PIPELINE_DISABLED, NO_PIPELINE, DUPLICATE)"
    )


async def test_an_event_handled_again_replaces_its_entry(nc: NATS) -> None:
    history = await open_history(nc.jetstream())
    await record(history, 1)
    await record(history, 2)
    await record(history, 1, Decision.MATCHED)
    response = await history.list(Request())
    assert tags(response) == ["v1", "v2"] and response.events[0].decisions[0].outcome == Decision.MATCHED
    assert (await nc.jetstream().stream_info(subjects.EVENT_HISTORY_STREAM)).state.messages == 2


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (Request(page_size=-1), "page_size"),
        (Request(page_token="garbage"), "page_token"),
        (Request(page_token="ZXYxOm5vdGFudW1iZXI"), "page_token"),
    ],
)
async def test_invalid_requests(nc: NATS, request_: event_service_pb2.ListEventsRequest, field: str) -> None:
    history = await open_history(nc.jetstream())
    assert (await rejection(history, request_)).startswith(field + ": ")


async def test_page_size_is_capped(nc: NATS) -> None:
    js = nc.jetstream()
    history = await open_history(js, capacity=2000)
    event = event_service_pb2.RegistryEvent(push=push("v"))
    for n in range(1100):
        event.push.event_id = f"e{n}"
        await js.publish(history_subject(event.push.event_id), event.SerializeToString())
    assert len((await history.list(Request(page_size=5000))).events) == 1000
    assert len((await history.list(Request())).events) == 50


async def test_page_tokens_are_signed_and_bound_to_the_filter(nc: NATS) -> None:
    history = await open_history(nc.jetstream())
    for n in range(4):
        await record(history, n, registry="registry.example.com", repository="team/app")
    token = (await history.list(Request(page_size=1, repository="team/app"))).next_page_token
    assert token and "team" not in token
    # The same filter however it is spelled: the token belongs to the normalised query.
    assert tags(await history.list(Request(page_size=1, repository="/team/app/", page_token=token))) == ["v2"]
    other = Request(repository="team/other", page_token=token)
    assert await rejection(history, other) == f"page_token: {OTHER_QUERY_MESSAGE}"
    tagged = Request(repository="team/app", tag="v1", page_token=token)
    assert await rejection(history, tagged) == f"page_token: {OTHER_QUERY_MESSAGE}"
    elsewhere = await open_history(nc.jetstream(), codec=PageTokenCodec(b"o" * 32))
    assert await rejection(elsewhere, Request(page_token=token)) == f"page_token: {INVALID_TOKEN_MESSAGE}"


async def test_an_entry_with_an_out_of_range_time_or_undecodable_is_skipped_not_served(nc: NATS) -> None:
    js = nc.jetstream()
    history = await open_history(js)
    await record(history, 1)
    bad = event_service_pb2.RegistryEvent(push=push("bad", event_id="bad"))
    bad.push.pushed_at.nanos = 1_000_000_000
    await js.publish(history_subject("bad"), bad.SerializeToString())
    await js.publish(history_subject("junk"), b"\xff\x00 not a protobuf")
    await record(history, 2)
    response = await history.list(Request())
    assert tags(response) == ["v2", "v1"]
    json.dumps([event.SerializeToString().hex() for event in response.events])  # serialisable as served


async def test_every_replica_answers_the_same_and_a_restart_loses_nothing(nats_server: NatsServer) -> None:
    first, second = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        one, two = await open_history(first.jetstream()), await open_history(second.jetstream())
        for n in range(3):
            await record(one if n % 2 else two, n)
        page = await one.list(Request(page_size=2))
        assert page == await two.list(Request(page_size=2)) and tags(page) == ["v2", "v1"]
        # A page token from one replica is good at the other (the key is shared).
        assert tags(await two.list(Request(page_size=2, page_token=page.next_page_token))) == ["v0"]
    finally:
        await first.close()
        await second.close()
    nats_server.restart()
    again = await nats.connect(nats_server.url)
    try:
        assert await (await open_history(again.jetstream())).list(Request(page_size=2)) == page
    finally:
        await again.close()


# --- through the app ---------------------------------------------------------------------------


@pytest.fixture
async def config() -> AsyncIterator[FakeConfig]:
    fake = FakeConfig([pipeline("web", registry="registry.example.com")])
    await fake.start()
    yield fake
    await fake.stop()


async def list_events(app: TriggerApp, **request: object) -> event_service_pb2.ListEventsResponse:
    async with grpc.aio.insecure_channel(app.grpc_address) as channel:
        stub = event_service_pb2_grpc.EventServiceStub(channel)
        return await stub.ListEvents(Request(**request))  # type: ignore[arg-type]


def distribution(event_id: str, tag: str, digest: str) -> bytes:
    host = "registry.example.com"
    target = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digest}
    target |= {"repository": "team/app", "tag": tag, "url": f"http://{host}/v2/team/app/manifests/{digest}"}
    event = {"id": event_id, "action": "push", "target": target, "request": {"id": "r", "host": host}}
    return json.dumps({"events": [event]}).encode()


async def test_two_trigger_replicas_list_the_same_events_and_a_new_one_after_they_stop(
    nats_server: NatsServer, config: FakeConfig, nc: NATS
) -> None:
    key = {"CONVEYOR_PAGE_TOKEN_KEY": "a-shared-page-token-key-0123456789abcdef"}
    async with (
        running_trigger(nats_server.url, config.address, **key) as one,
        running_trigger(nats_server.url, config.address, **key) as two,
    ):
        for n in range(6):
            body = distribution(f"e{n}", f"v{n}", f"sha256:{n:064x}")
            assert (await post(one if n % 2 else two, "distribution", body)).status == 200

        async def idle() -> None:
            await matcher_idle(nc.jetstream())
            assert len((await list_events(one)).events) == 6

        await eventually(idle)
        # Both matchers share the durable consumer: the order is the order they finished in, the same for all.
        page = await list_events(one, page_size=4, decision=Decision.MATCHED)
        assert page == await list_events(two, page_size=4, decision=Decision.MATCHED) and len(page.events) == 4
        rest = await list_events(two, page_size=4, decision=Decision.MATCHED, page_token=page.next_page_token)
        assert sorted(e.push.tag for e in [*page.events, *rest.events]) == [f"v{n}" for n in range(6)]
        assert await list_events(one, decision=Decision.DUPLICATE) == event_service_pb2.ListEventsResponse()
    async with running_trigger(nats_server.url, config.address, **key) as three:
        assert await list_events(three, page_size=4, decision=Decision.MATCHED) == page

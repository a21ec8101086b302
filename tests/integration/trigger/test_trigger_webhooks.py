"""The real webhook receiver over HTTP, storing into a real nats-server: exactly what reaches the stream."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.v1 import pipeline_pb2
from conveyor_trigger.app import TriggerApp
from conveyor_trigger.edges import receiver
from tests.integration.trigger.trigger_harness import (
    AUTH,
    TOKEN,
    FakeConfig,
    get,
    metric_value,
    post,
    pushes_in_stream,
    running_trigger,
)
from tests.support.nats_server import NatsServer
from tests.support.net import eventually
from tests.support.webhook_payloads import SAMPLE_LIST, SAMPLES


@pytest.fixture
async def config() -> AsyncIterator[FakeConfig]:
    fake = await FakeConfig().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def trigger(nats_server: NatsServer, config: FakeConfig) -> AsyncIterator[TriggerApp]:
    # Receive-only: these tests look at what the receiver stores, not at matching.
    async with running_trigger(nats_server.url, config.address, CONVEYOR_TRIGGER_MATCHER_ENABLED="false") as app:
        yield app


async def test_every_sample_reaches_the_stream_exactly(trigger: TriggerApp, nc: NATS) -> None:
    js = nc.jetstream()
    seen = 0
    for sample in SAMPLE_LIST:
        reply = await post(trigger, sample.format, sample.body(), headers=sample.headers, query=sample.query)
        assert reply.status == 200, (sample.name, reply.body)
        assert len(reply.body["stored"]) == len(sample.expected), sample.name
        assert len(reply.body["ignored"]) == sample.ignored, sample.name

        stored = await pushes_in_stream(js)
        new = stored[seen:]
        seen = len(stored)
        assert [(p.registry, p.repository, p.tag, p.digest) for _, p in new] == [
            (e.registry, e.repository, e.tag, e.digest) for e in sample.expected
        ], sample.name
        for msg_id, push in new:
            assert msg_id == push.event_id and push.event_id in reply.body["stored"]
            assert push.source_format == sample.format
            assert push.origin == pipeline_pb2.IMAGE_ORIGIN_LOCAL_PUSH
    assert seen == sum(len(s.expected) for s in SAMPLE_LIST)


async def test_a_registry_retry_of_the_same_delivery_is_stored_once(trigger: TriggerApp, nc: NATS) -> None:
    for sample in (SAMPLES["harbor-push"], SAMPLES["distribution-batch"], SAMPLES["quay-push-list"]):
        first = await post(trigger, sample.format, sample.body(), headers=sample.headers)
        # A retry may be re-serialised by the registry: same document, different formatting.
        reformatted = json.dumps(sample.json(), separators=(",", ":")).encode()
        again = await post(trigger, sample.format, reformatted, headers=sample.headers)
        assert first.status == again.status == 200
        assert again.body["stored"] == [] and sorted(again.body["duplicates"]) == sorted(first.body["stored"])
    assert len(await pushes_in_stream(nc.jetstream())) == 1 + 2 + 2


async def test_rejected_requests_publish_nothing_and_are_counted(trigger: TriggerApp, nc: NATS) -> None:
    push_body = SAMPLES["harbor-push"].body()
    before = (await get(trigger, "/metrics")).body
    no_host = SAMPLES["distribution-push"].json()
    for event in no_host["events"]:
        del event["request"]["host"]
        event["target"]["url"] = "/v2/team/app/manifests/x"
    cases = [
        ("harbor", push_body, {"Authorization": "Bearer wrong-token-000000000"}, 401, "unauthorized"),
        ("harbor", push_body, {"Authorization": ""}, 401, "unauthorized"),
        ("harbor", b"{not json", {}, 400, "malformed_json"),
        ("harbor", b'{"hello": "world"}', {}, 400, "unknown_shape"),
        ("harbor", b"[1, 2, 3]", {}, 400, "unknown_shape"),
        ("distribution", json.dumps(no_host).encode(), {}, 400, "missing_registry"),
        ("harbor", b" " * (1024 * 1024 + 1), {}, 413, "too_large"),
        ("nexus", push_body, {}, 404, "unknown_format"),
    ]
    for fmt, body, headers, status, reason in cases:
        reply = await post(trigger, fmt, body, headers=headers)
        assert (reply.status, reply.body["reason"]) == (status, reason), (fmt, reason, reply.body)
        assert reply.body["error"]
    missing = await post(trigger, "distribution", json.dumps(no_host).encode())
    assert "?registry=" in missing.body["error"]
    unauthenticated = await post(trigger, "harbor", push_body, auth=False)
    assert unauthenticated.status == 401 and "missing webhook credentials" in unauthenticated.body["error"]
    assert unauthenticated.headers["WWW-Authenticate"].startswith("Bearer")

    assert await pushes_in_stream(nc.jetstream()) == []
    after = (await get(trigger, "/metrics")).body
    name = "conveyor_trigger_webhook_rejected_total"
    for fmt, reason, times in [
        ("harbor", "unauthorized", 3),
        ("harbor", "malformed_json", 1),
        ("harbor", "unknown_shape", 2),
        ("distribution", "missing_registry", 2),
        ("harbor", "too_large", 1),
        ("unknown", "unknown_format", 1),
    ]:
        delta = metric_value(after, name, format=fmt, reason=reason) - metric_value(
            before, name, format=fmt, reason=reason
        )
        assert delta == times, (fmt, reason)


async def test_chunked_body_over_the_limit_is_refused(trigger: TriggerApp, nc: NATS) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 32768  # 1.25 MiB without a Content-Length

    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{trigger.webhook_url}/webhooks/harbor", data=chunks(), headers=AUTH) as response,
    ):
        assert response.status == 413
    assert await pushes_in_stream(nc.jetstream()) == []


async def test_registry_query_parameter_and_token_query_and_github_hmac(trigger: TriggerApp, nc: NATS) -> None:
    no_host = SAMPLES["distribution-push"].json()
    for event in no_host["events"]:
        del event["request"]["host"]
        event["target"]["url"] = ""
    reply = await post(
        trigger,
        "distribution",
        json.dumps(no_host).encode(),
        auth=False,
        query={"registry": "Registry.LAN:5000", "token": TOKEN},
    )
    assert reply.status == 200, reply.body
    bad_host = await post(trigger, "distribution", json.dumps(no_host).encode(), query={"registry": "bad host"})
    assert bad_host.status == 400

    sample = SAMPLES["github-registry-package"]
    signature = "sha256=" + hmac.new(TOKEN.encode(), sample.body(), hashlib.sha256).hexdigest()
    signed = await post(
        trigger, "github", sample.body(), auth=False, headers={**sample.headers, "X-Hub-Signature-256": signature}
    )
    assert signed.status == 200, signed.body
    tampered = await post(
        trigger,
        "github",
        sample.body().replace(b"v5.1.0", b"v6.6.6"),
        auth=False,
        headers={**sample.headers, "X-Hub-Signature-256": signature},
    )
    assert tampered.status == 401

    stored = [(p.registry, p.tag) for _, p in await pushes_in_stream(nc.jetstream())]
    assert stored == [("registry.lan:5000", "v1.2.3"), ("ghcr.io", "v5.1.0")]


async def test_503_while_nats_is_down_then_stored_after_it_returns(
    trigger: TriggerApp, nats_server: NatsServer, nc: NATS
) -> None:
    sample = SAMPLES["harbor-cloudevents-push"]
    nats_server.kill()

    async def refused() -> None:
        reply = await post(trigger, "harbor", sample.body(), headers=sample.headers)
        assert reply.status == 503, reply.body
        assert reply.headers.get("Retry-After") and reply.body["reason"] == "bus_unavailable"
        health = await get(trigger, "/healthz")
        assert health.status == 503

    await eventually(refused, timeout=20)
    nats_server.start()

    async def stored() -> None:
        reply = await post(trigger, "harbor", sample.body(), headers=sample.headers)
        assert reply.status == 200, reply.body

    await eventually(stored, timeout=30, interval=0.2)
    await eventually(_count_pushes(nc, 1), timeout=20)
    assert (await get(trigger, "/healthz")).status == 200


def _count_pushes(nc: NATS, expected: int):  # type: ignore[no-untyped-def]
    async def check() -> None:
        assert len(await pushes_in_stream(nc.jetstream())) == expected

    return check


async def test_concurrent_webhooks_are_all_stored(trigger: TriggerApp, nc: NATS) -> None:
    template = SAMPLES["azure-push"].json()
    bodies = []
    for n in range(60):
        document = dict(template, id=f"00000000-0000-4000-8000-{n:012d}")
        document["target"] = dict(template["target"], tag=f"build-{n}")
        bodies.append(json.dumps(document).encode())
    replies = await asyncio.gather(*(post(trigger, "azure", body) for body in bodies))
    assert {r.status for r in replies} == {200}
    stored = await pushes_in_stream(nc.jetstream())
    assert sorted(p.tag for _, p in stored) == sorted(f"build-{n}" for n in range(60))


async def test_healthz_and_metrics(trigger: TriggerApp) -> None:
    health = await get(trigger, "/healthz")
    assert health.status == 200 and json.loads(health.body) == {"status": "ok"}
    await post(trigger, "harbor", SAMPLES["harbor-pull"].body())
    metrics = await get(trigger, "/metrics")
    assert metrics.status == 200
    assert metric_value(metrics.body, "conveyor_trigger_webhook_events_total", format="harbor", outcome="ignored") >= 1
    assert bus.IMAGE_PUSHED_SUBJECT  # the stream the receiver stores into


async def test_without_auth_configuration_every_webhook_is_refused(nats_server: NatsServer, config: FakeConfig) -> None:
    async with running_trigger(
        nats_server.url, config.address, CONVEYOR_WEBHOOK_TOKEN="", CONVEYOR_TRIGGER_MATCHER_ENABLED="false"
    ) as app:
        reply = await post(app, "harbor", SAMPLES["harbor-push"].body())
        assert reply.status == 401 and "CONVEYOR_WEBHOOK_TOKEN" in reply.body["error"]
    async with running_trigger(
        nats_server.url,
        config.address,
        CONVEYOR_WEBHOOK_TOKEN="",
        CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED="true",
        CONVEYOR_TRIGGER_MATCHER_ENABLED="false",
    ) as app:
        reply = await post(app, "harbor", SAMPLES["harbor-push"].body(), auth=False)
        assert reply.status == 200


async def test_an_unexpected_failure_is_a_counted_500_and_the_receiver_keeps_serving(
    trigger: TriggerApp, nc: NATS, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def explode(*_args: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(receiver, "ingest_webhook", explode)
    reply = await post(trigger, "harbor", SAMPLES["harbor-push"].body())
    assert (reply.status, reply.body["reason"]) == (500, "internal")
    assert "bug" not in reply.body["error"]
    monkeypatch.undo()
    assert (await post(trigger, "harbor", SAMPLES["harbor-push"].body())).status == 200
    assert len(await pushes_in_stream(nc.jetstream())) == 1

"""The notifications a real Distribution registry sends for a push, as a webhook receiver sees them."""

from __future__ import annotations

import json
import pathlib
from typing import Any

from conveyor.registry import OCI_INDEX, OCI_MANIFEST
from tests.integration.registry.conftest import client_for
from tests.support.registry import (
    CAPTURED_PAYLOADS,
    NOTIFICATION_MEDIA_TYPE,
    NotificationEndpoint,
    NotificationReceiver,
    build_image,
    build_index,
    capture_real_payloads,
    running_registry,
)

WEBHOOK_AUTH = "Bearer webhook-secret-for-tests"
PAYLOADS = pathlib.Path(__file__).parents[2] / "support" / "webhook_payloads"


def pushes(receiver: NotificationReceiver, repository: str) -> list[dict[str, Any]]:
    return receiver.events(action="push", repository=repository)


async def test_a_push_notifies_each_blob_then_the_tagged_manifest(tmp_path: pathlib.Path) -> None:
    async with NotificationReceiver(authorization=WEBHOOK_AUTH) as receiver:
        endpoint = NotificationEndpoint(receiver.url, headers={"Authorization": WEBHOOK_AUTH})
        async with running_registry(tmp_path / "registry", notifications=[endpoint]) as registry:
            image = build_image(tmp_path / "image", "v1")
            await registry.push(image, "team/app")
            manifest_event = await receiver.wait_for_manifest_push("team/app", "v1")
            async with client_for(registry) as client:
                resolved = await client.resolve_digest(registry.host, "team/app", "v1")

    assert all(r.accepted for r in receiver.received)  # the configured header reached the receiver
    assert all(r.headers["Content-Type"] == NOTIFICATION_MEDIA_TYPE for r in receiver.received)
    events = pushes(receiver, "team/app")
    manifest_index = events.index(manifest_event)
    blob_events = events[:manifest_index]
    # Several notifications for one push: one per blob, then the tagged manifest.
    assert {e["target"]["digest"] for e in blob_events} == {blob.digest for blob in image.blobs}
    assert all(e["target"]["mediaType"] == "application/octet-stream" for e in blob_events)
    assert all("tag" not in e["target"] for e in blob_events)
    target = manifest_event["target"]
    assert target["tag"] == "v1"
    assert target["mediaType"] == OCI_MANIFEST
    assert target["digest"] == image.digest == resolved
    assert target["size"] == len(image.manifest_bytes)
    assert target["repository"] == "team/app"
    assert target["url"] == f"{registry.url}/v2/team/app/manifests/{image.digest}"
    assert {r["digest"] for r in target["references"]} == {blob.digest for blob in image.blobs}
    assert manifest_event["request"]["method"] == "PUT"
    assert manifest_event["request"]["host"] == registry.host
    assert manifest_event["id"] and manifest_event["timestamp"]


async def test_an_index_push_notifies_the_platform_manifests_then_the_tagged_index(tmp_path: pathlib.Path) -> None:
    async with NotificationReceiver() as receiver:
        endpoint = NotificationEndpoint(receiver.url, ignored_actions=("pull",))
        async with running_registry(tmp_path / "registry", notifications=[endpoint]) as registry:
            index = build_index(tmp_path / "index", "2.0")
            await registry.push(index, "team/multi")
            index_event = await receiver.wait_for_manifest_push("team/multi", "2.0")

    events = pushes(receiver, "team/multi")
    assert events[-1] == index_event
    assert index_event["target"]["mediaType"] == OCI_INDEX
    assert index_event["target"]["digest"] == index.digest
    assert [r["digest"] for r in index_event["target"]["references"]] == [c.digest for c in index.children]
    platform_manifests = [e for e in events if e["target"]["mediaType"] == OCI_MANIFEST]
    assert {e["target"]["digest"] for e in platform_manifests} == {c.digest for c in index.children}
    assert all("tag" not in e["target"] for e in platform_manifests)  # only the index carries the tag
    assert len([e for e in events if "tag" in e["target"]]) == 1


async def test_the_registry_retries_a_receiver_that_rejects_it(tmp_path: pathlib.Path) -> None:
    async with NotificationReceiver(authorization=WEBHOOK_AUTH) as receiver:
        endpoint = NotificationEndpoint(receiver.url, headers={"Authorization": "Bearer wrong"}, backoff="100ms")
        async with running_registry(tmp_path / "registry", notifications=[endpoint]) as registry:
            await registry.push(build_image(tmp_path / "image", "v1"), "team/app")

            def retried(r: NotificationReceiver) -> bool:
                ids = [e["id"] for envelope in r.received for e in envelope.events]
                return len(ids) > len(set(ids))

            await receiver.wait_for(retried)
    assert not any(r.accepted for r in receiver.received)
    assert receiver.events() == []


def shape(value: Any) -> Any:
    """The structure of a JSON value: keys and types, not the values."""
    if isinstance(value, dict):
        return {key: shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [shape(item) for item in value[:1]]
    return type(value).__name__


async def test_saved_real_payloads_match_what_the_registry_sends_now(tmp_path: pathlib.Path) -> None:
    fresh = await capture_real_payloads(tmp_path / "work", tmp_path / "out")
    for kind, name in CAPTURED_PAYLOADS.items():
        saved = json.loads((PAYLOADS / name).read_text())
        current = json.loads(fresh[kind].read_text())
        assert shape(saved) == shape(current), name
        [event] = saved["events"]
        assert event["action"] == "push"
        assert event["target"]["tag"]
        assert event["actor"]["name"] == "ci-bot"
        expected_type = OCI_INDEX if kind == "index" else OCI_MANIFEST
        assert event["target"]["mediaType"] == current["events"][0]["target"]["mediaType"] == expected_type

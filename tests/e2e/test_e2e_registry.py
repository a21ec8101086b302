"""End to end (issue 6): a real registry's own notifications drive a real deploy.

registry (Debian's docker-registry, pushed to with skopeo) -> notification -> trigger ->
NATS -> deployer -> sandbox cluster -> run record in config. Two registries share the module's
system: an anonymous one and one with basic auth (htpasswd), both notifying the trigger's
`/webhooks/distribution` with its token and known to Conveyor through a registries file (the
private one with credentials). The registry names itself in a notification by the Host its
client used (`request.host`), which is `127.0.0.1:PORT` for skopeo here: pipelines use that host.
"""

from __future__ import annotations

import asyncio
import pathlib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.support.net import free_port
from tests.support.registry import BuiltImage, NotificationEndpoint, RegistryServer, build_image, build_index
from tests.support.system import System, running_system, wait_until

pytestmark = pytest.mark.e2e

PRIVATE_USER = ("ci-bot", "s3cret-for-e2e")


@dataclass
class World:
    system: System
    open: RegistryServer  # anonymous
    private: RegistryServer  # basic auth
    workdir: pathlib.Path

    def push(self, image: BuiltImage, repository: str, tag: str | None = None, *, private: bool = False) -> None:
        registry = self.private if private else self.open
        asyncio.run(registry.push(image, repository, tag, creds=PRIVATE_USER if private else None))


def write_registries_file(path: pathlib.Path, open_host: str, private_host: str) -> pathlib.Path:
    password_file = path.with_name("private-registry-password")
    password_file.write_text(PRIVATE_USER[1])
    password_file.chmod(0o600)
    registries = [
        {"host": open_host, "scheme": "http"},
        {"host": private_host, "scheme": "http", "username": PRIVATE_USER[0], "password_file": str(password_file)},
    ]
    path.write_text(yaml.safe_dump({"registries": registries}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("e2e-registry")
    open_port, private_port = free_port(), free_port()
    registries_file = write_registries_file(
        root / "registries.yaml", f"127.0.0.1:{open_port}", f"127.0.0.1:{private_port}"
    )
    with running_system(root / "system", registries_file=registries_file) as system:
        endpoint = NotificationEndpoint(
            f"http://{system.webhook_addr}/webhooks/distribution",
            headers={"Authorization": f"Bearer {system.token}"},
            ignored_actions=("pull",),
            backoff="200ms",
        )
        open_registry = RegistryServer(root / "open-registry", port=open_port, notifications=[endpoint])
        private_registry = RegistryServer(
            root / "private-registry",
            port=private_port,
            notifications=[endpoint],
            htpasswd=dict([PRIVATE_USER]),
        )
        try:
            open_registry.start()
            private_registry.start()
            yield World(system, open_registry, private_registry, root)
        finally:
            open_registry.stop()
            private_registry.stop()


def create_pipeline(world: World, name: str, repository: str, tag_filter: str, *, private: bool = False) -> str:
    """A pin_digest pipeline from REGISTRY/REPOSITORY to container `app` of a new Deployment NAME."""
    registry = world.private if private else world.open
    world.system.create_deployment(name)
    world.system.ctl(
        "pipelines",
        "create",
        name,
        "--image",
        f"{registry.host}/{repository}",
        "--tag-filter",
        tag_filter,
        "--platform",
        "kubernetes",
        "--cluster",
        "sandbox",
        "--namespace",
        "demo",
        "--kind",
        "deployment",
        "--workload",
        name,
        "--container",
        "app",
        "--pin-digest",
    )
    return registry.host


def decided_events(system: System, repository: str, count: int) -> list[dict[str, Any]]:
    """Wait until `count` events of REPOSITORY carry decisions; the events, newest first."""

    def decided() -> list[dict[str, Any]]:
        events = system.events(repository)
        assert len(events) >= count and all(e.get("decisions") for e in events), events
        return events

    return wait_until(decided, timeout=60)


def test_a_tagged_push_deploys_once_pinned_to_its_digest(world: World) -> None:
    system = world.system
    host = create_pipeline(world, "reg-app", "e2e/app", r"regex:v\d+(\.\d+)*")
    image = build_image(world.workdir / "image-app", "v1.0.0")

    world.push(image, "e2e/app")

    # The push made the registry notify every blob, then the tagged manifest: one run.
    [run] = system.wait_for_runs("reg-app")
    expected = f"{host}/e2e/app:v1.0.0@{image.digest}"
    assert run["state"] == "SUCCEEDED", run
    assert run["trigger"] == "PUSH"
    assert (run["image"], run["tag"], run["digest"]) == (expected, "v1.0.0", image.digest)
    assert run["eventId"].startswith("distribution:")
    assert system.images("reg-app")["app"] == expected
    assert system.generation("reg-app") == 2  # created, then patched once
    [event] = decided_events(system, "e2e/app", 1)
    assert event["push"]["registry"] == host and event["push"]["digest"] == image.digest
    assert [(d["outcome"], d["run"]) for d in event["decisions"]] == [("MATCHED", run["name"])]
    assert len(system.runs("reg-app")) == 1


def test_a_multi_arch_index_push_deploys_the_index_digest(world: World) -> None:
    system = world.system
    host = create_pipeline(world, "reg-multi", "e2e/multi", "any")
    index = build_index(world.workdir / "image-multi", "2.0.0")

    world.push(index, "e2e/multi")

    [run] = system.wait_for_runs("reg-multi")
    expected = f"{host}/e2e/multi:2.0.0@{index.digest}"
    assert run["state"] == "SUCCEEDED", run
    assert run["digest"] == index.digest
    assert run["digest"] not in {child.digest for child in index.children}
    assert run["image"] == expected
    assert system.images("reg-multi")["app"] == expected
    assert system.generation("reg-multi") == 2
    # The platform manifests (pushed by digest, untagged) are not pushes of their own.
    [event] = decided_events(system, "e2e/multi", 1)
    assert event["push"]["tag"] == "2.0.0" and event["push"]["mediaType"].endswith("image.index.v1+json")
    assert len(system.runs("reg-multi")) == 1


def test_the_same_image_under_a_second_tag_deploys_once(world: World) -> None:
    system = world.system
    create_pipeline(world, "reg-retag", "e2e/retag", "any")
    image = build_image(world.workdir / "image-retag", "1.1.0")

    world.push(image, "e2e/retag")
    [first] = system.wait_for_runs("reg-retag")
    assert first["state"] == "SUCCEEDED", first
    world.push(image, "e2e/retag", "stable")

    newest, oldest = decided_events(system, "e2e/retag", 2)
    assert (oldest["push"]["tag"], newest["push"]["tag"]) == ("1.1.0", "stable")
    assert oldest["push"]["digest"] == newest["push"]["digest"] == image.digest
    [decision] = newest["decisions"]
    assert decision["outcome"] == "DUPLICATE", newest
    assert decision["run"] == first["name"]
    assert "already deployed" in decision["reason"] and first["eventId"] in decision["reason"], decision
    assert [run["name"] for run in system.runs("reg-retag")] == [first["name"]]
    assert system.images("reg-retag")["app"] == first["image"]
    assert system.generation("reg-retag") == 2  # the second tag patched nothing


def test_a_push_to_a_repository_without_pipeline_is_listed_with_the_reason(world: World) -> None:
    system = world.system
    image = build_image(world.workdir / "image-orphan", "v9")

    world.push(image, "e2e/orphan")

    [event] = decided_events(system, "e2e/orphan", 1)
    assert event["push"]["registry"] == world.open.host and event["push"]["digest"] == image.digest
    [decision] = event["decisions"]
    assert decision["outcome"] == "NO_PIPELINE"
    assert not decision.get("pipeline") and not decision.get("run")
    assert f"{world.open.host}/e2e/orphan" in decision["reason"], decision
    table = system.ctl("events", "list", "--repository", "e2e/orphan").stdout
    assert "NO_PIPELINE" in table and "e2e/orphan:v9" in table


def test_a_basic_auth_registry_lists_tags_and_start_refuses_a_missing_tag(world: World) -> None:
    system = world.system
    host = create_pipeline(world, "reg-private", "e2e/private", "exact:release", private=True)
    first = build_image(world.workdir / "image-private-1", "v1")
    second = build_image(world.workdir / "image-private-2", "v2")
    world.push(first, "e2e/private", private=True)
    world.push(second, "e2e/private", private=True)

    # The registry really wants credentials.
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{world.private.url}/v2/e2e/private/tags/list", timeout=10)
    assert anonymous.value.code == 401

    # Both pushes were notified and did not match the pipeline's filter: no run.
    events = decided_events(system, "e2e/private", 2)
    assert {e["push"]["tag"] for e in events} == {"v1", "v2"}
    assert {d["outcome"] for e in events for d in e["decisions"]} == {"TAG_MISMATCH"}

    listed = system.ctl_json("pipelines", "tags", "reg-private", "--digests")
    assert {(t["tag"], t.get("digest")) for t in listed["tags"]} == {("v1", first.digest), ("v2", second.digest)}
    table = system.ctl("pipelines", "tags", "reg-private").stdout
    assert "v1" in table and "v2" in table

    refused = system.ctl("pipelines", "start", "reg-private", "--tag", "nope", expect=3)
    assert refused.stderr.startswith("error: NOT_FOUND:"), refused
    assert "nope" in refused.stderr and "does not exist" in refused.stderr, refused
    assert system.runs("reg-private") == []

    # A tag that exists starts, pinned to the digest the registry reports for it.
    started = system.ctl("pipelines", "start", "reg-private", "--tag", "v2", "-o", "json").json()
    run = system.wait_for_run(started["name"])
    expected = f"{host}/e2e/private:v2@{second.digest}"
    assert run["state"] == "SUCCEEDED", run
    assert (run["trigger"], run["digest"], run["image"]) == ("MANUAL", second.digest, expected)
    assert system.images("reg-private")["app"] == expected

"""The registry runner `make run` uses (conveyor_sandbox.registry), with the real docker-registry and skopeo.

Seeding pushes the demo images through a registry without notifications (nobody hears of them);
the registry started afterwards on the same storage serves them and notifies its endpoint of a new
push, with the digest the layout builder computed.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import urllib.request
from typing import Any

from conveyor_sandbox import images, registry
from tests.support.registry import NotificationReceiver


def test_registry_tools_are_installed() -> None:
    # Never skipped: `make test` installs them (scripts/bootstrap.sh).
    missing = [name for name in ("docker-registry", "skopeo") if shutil.which(name) is None]
    assert not missing, f"{missing} not installed: {registry.INSTALL_HINT}"


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


async def test_seeded_images_are_served_and_a_new_push_is_notified(tmp_path: pathlib.Path) -> None:
    layout = tmp_path / "images"
    storage = tmp_path / "storage"
    digests = images.build_demo_layout(layout)

    pushed = await registry.seed(storage, tmp_path / "seeding", layout, "demo/web", images.DEMO_SEEDED_TAGS)
    assert pushed == sorted(images.DEMO_SEEDED_TAGS)
    assert registry.stored_tags(storage, "demo/web") == set(images.DEMO_SEEDED_TAGS)
    # Only what is missing: a second seed pushes nothing (and starts no registry).
    assert await registry.seed(storage, tmp_path / "seeding", layout, "demo/web", images.DEMO_SEEDED_TAGS) == []

    async with NotificationReceiver(authorization="Bearer t0ken") as receiver:
        endpoint = registry.NotificationEndpoint(
            receiver.url, headers={"Authorization": "Bearer t0ken"}, ignored_actions=("pull",), backoff="200ms"
        )
        async with registry.LocalRegistry(tmp_path / "run", storage=storage, notifications=[endpoint]) as local:
            assert oct(local.config_path.stat().st_mode & 0o777) == "0o600"
            tags = get_json(f"{local.url}/v2/demo/web/tags/list")
            assert sorted(tags["tags"]) == sorted(images.DEMO_SEEDED_TAGS)

            await local.push(layout, images.DEMO_NEXT_TAG, "demo/web")
            event = await receiver.wait_for_manifest_push("demo/web", images.DEMO_NEXT_TAG)
            assert event["target"]["digest"] == digests[images.DEMO_NEXT_TAG]
            assert event["request"]["host"] == local.host  # what a pipeline's registry must say
            # The seeded tags never reached the endpoint: their pushes went through the seeding registry.
            notified = {e["target"].get("tag") for e in receiver.events(action="push", repository="demo/web")}
            assert notified - {None} == {images.DEMO_NEXT_TAG}
            assert all(r.accepted for r in receiver.received)
        assert local.process is None
    assert registry.stored_tags(storage, "demo/web") == set(images.DEMO_TAGS)

"""The bench's timed sandbox: every PATCH is stamped on arrival with the image it sets."""

from __future__ import annotations

import json
import time

import aiohttp

from bench.sandbox import TimedSandbox, deployment


async def test_timed_sandbox_stamps_patches_between_send_and_answer() -> None:
    async with TimedSandbox() as sandbox, aiohttp.ClientSession() as session:
        await sandbox.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}})
        await sandbox.apply(deployment("bench", "web", "registry.bench.local/web:0"))
        url = f"{sandbox.url}/apis/apps/v1/namespaces/bench/deployments/web"
        windows = []
        for version in range(1, 31):
            async with session.get(url) as reply:
                assert reply.status == 200
            ops = [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/image",
                    "value": f"registry.bench.local/web:{version}",
                }
            ]
            sent = time.monotonic()
            async with session.patch(
                url, data=json.dumps(ops), headers={"Content-Type": "application/json-patch+json"}
            ) as reply:
                assert reply.status == 200
                body = await reply.json()
            windows.append((sent, time.monotonic()))
            assert body["spec"]["template"]["spec"]["containers"][0]["image"] == f"registry.bench.local/web:{version}"

        patches = sandbox.take_patches()
        assert [p.images() for p in patches] == [[f"registry.bench.local/web:{v}"] for v in range(1, 31)]
        for patch, (sent, answered) in zip(patches, windows, strict=True):
            assert sent <= patch.arrived <= answered
            assert patch.status == 200
        assert sandbox.take_patches() == []
        # The sandbox still reports every request it served (GETs and PATCHes).
        assert len(sandbox.requests(kind="Deployment", name="web")) == 60
        assert len(sandbox.requests(method="PATCH", kind="Deployment")) == 30

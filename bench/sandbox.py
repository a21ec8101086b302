"""The sandbox Kubernetes API, run inside the bench driver, timestamping every PATCH on arrival.

The benchmark's latency figures end when a PATCH reaches the Kubernetes API. The sandbox's own
request records carry no time, so `TimedEmulator` notes `time.monotonic()` when a request enters
the emulator (headers parsed, before any processing) and, once served, the PATCH's body, from
which the bench reads the image that was set. `time.monotonic()` is the system-wide
CLOCK_MONOTONIC, the same clock the webhook client in this process stamps its sends with.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock

from conveyor_sandbox import SandboxCluster
from conveyor_sandbox.controller import RolloutSimulator
from conveyor_sandbox.emulator import SandboxEmulator


@dataclass(frozen=True)
class PatchArrival:
    arrived: float  # time.monotonic() when the request reached the API
    path: str
    status: int
    body: bytes

    def images(self) -> list[str]:
        """Images a JSON Patch (or merge patch) sets."""
        try:
            document = json.loads(self.body)
        except ValueError:
            return []
        return images_in_patch(document)


def images_in_patch(document: Any) -> list[str]:
    found: list[str] = []
    if isinstance(document, list):  # JSON Patch: replace/add ops on .../image
        for op in document:
            if (
                isinstance(op, dict)
                and op.get("op") in ("replace", "add")
                and str(op.get("path", "")).endswith("/image")
                and isinstance(op.get("value"), str)
            ):
                found.append(op["value"])
    elif isinstance(document, dict):  # merge patches: any `image` value inside
        stack: list[Any] = [document]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key, value in item.items():
                    if key == "image" and isinstance(value, str):
                        found.append(value)
                    else:
                        stack.append(value)
            elif isinstance(item, list):
                stack.extend(item)
    return found


@attrs.define(kw_only=True)
class TimedEmulator(SandboxEmulator):
    patches: list[PatchArrival] = attrs.field(factory=list, init=False)
    recording: bool = attrs.field(default=True, init=False)

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        arrived = time.monotonic()
        response = await super().__call__(raw_request)
        if self.recording and raw_request.method == "PATCH":
            body = await raw_request.read()  # already read by the emulator: served from aiohttp's buffer
            self.patches.append(PatchArrival(arrived, raw_request.path, response.status, body))
        return response


class TimedSandbox(SandboxCluster):
    """A `SandboxCluster` whose emulator records PATCH arrival times; no simulated controllers
    (nothing in the bench follows rollouts, and they would only compete for the CPU)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, context: str = "bench") -> None:
        super().__init__(host=host, port=port, auto_rollout=False, context=context)
        self.emulator: TimedEmulator = TimedEmulator()
        self.controller = RolloutSimulator(self.emulator, enabled=False)
        self._server = kmock.Server(self.emulator, host=host, port=port or None)

    def take_patches(self) -> list[PatchArrival]:
        patches, self.emulator.patches = self.emulator.patches, []
        return patches


def deployment(namespace: str, name: str, image: str, container: str = "app") -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"containers": [{"name": container, "image": image}]},
            },
        },
    }

"""`python -m conveyor_sandbox --state FILE` (as `make run` starts it) keeps its objects across restarts.

A change made over HTTP is on disk as soon as the API answered (the sandbox is killed with SIGKILL,
so nothing is flushed at exit), a restarted sandbox serves the workloads with the images, generations
and revisions they had instead of fresh samples, and a rollout cut short by a stop completes after
the restart.
"""

from __future__ import annotations

import json
import pathlib
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.support.net import free_port

DEPLOYMENT = "/apis/apps/v1/namespaces/demo/deployments/web"
FIRST_IMAGE = "127.0.0.1:5999/demo/web:v1.0.0"


@dataclass
class Sandbox:
    url: str
    line: str  # its first output line
    process: subprocess.Popen[str]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(20) == 0


@contextmanager
def sandbox(state: pathlib.Path, tmp_path: pathlib.Path, *, rollout_delay: str) -> Iterator[Sandbox]:
    """A sandbox process, SIGKILLed at the end unless stopped."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor_sandbox",
            "--port",
            str(port),
            "--kubeconfig",
            str(tmp_path / "kubeconfig"),
            "--state",
            str(state),
            "--web-image",
            FIRST_IMAGE,
            "--rollout-delay",
            rollout_delay,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("SANDBOX"), line + process.stdout.read()
        yield Sandbox(f"http://127.0.0.1:{port}", line, process)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(20)


def request(url: str, method: str = "GET", body: Any = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json-patch+json"} if body is not None else {}
    with urllib.request.urlopen(urllib.request.Request(url, data, headers, method=method), timeout=10) as reply:
        return json.load(reply)


def set_image(url: str, image: str) -> dict[str, Any]:
    patch = [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": image}]
    result: dict[str, Any] = request(url + DEPLOYMENT, "PATCH", patch)
    return result


def wait_rolled_out(url: str, generation: int, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        deployment: dict[str, Any] = request(url + DEPLOYMENT)
        if deployment.get("status", {}).get("observedGeneration") == generation:
            return deployment
        assert time.monotonic() < deadline, deployment
        time.sleep(0.05)


def pod_images(url: str) -> set[str]:
    pods = request(url + "/api/v1/namespaces/demo/pods?labelSelector=app%3Dweb")["items"]
    return {pod["spec"]["containers"][0]["image"] for pod in pods}


def test_a_restarted_sandbox_keeps_what_was_deployed(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "sandbox-state.json"
    with sandbox(state, tmp_path, rollout_delay="100ms") as first:
        url = first.url
        assert "namespace demo: Deployment web" in first.line  # first start: the samples
        assert request(url + DEPLOYMENT)["spec"]["template"]["spec"]["containers"][0]["image"] == FIRST_IMAGE
        patched = set_image(url, "127.0.0.1:5999/demo/web:v1.1.0")
        assert patched["metadata"]["generation"] == 2
        before = wait_rolled_out(url, 2)
        assert pod_images(url) == {"127.0.0.1:5999/demo/web:v1.1.0"}
        # Written through a temporary file renamed over the state: never a partial file.
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("sandbox-state")) == [state.name]
    # SIGKILLed: whatever survives was written when it changed.

    with sandbox(state, tmp_path, rollout_delay="100ms") as second:
        url = second.url
        assert f"objects restored from {state}" in second.line
        after: dict[str, Any] = request(url + DEPLOYMENT)
        assert after["spec"]["template"]["spec"]["containers"][0]["image"] == "127.0.0.1:5999/demo/web:v1.1.0"
        assert after["metadata"]["generation"] == 2 and after["status"] == before["status"]
        assert after["metadata"]["uid"] == before["metadata"]["uid"]
        assert pod_images(url) == {"127.0.0.1:5999/demo/web:v1.1.0"}
        replica_sets = request(url + "/apis/apps/v1/namespaces/demo/replicasets")["items"]
        assert len(replica_sets) == 2  # both revisions, as after the rollout
        # Resource versions go on from the restored ones: none is handed out twice.
        patched = set_image(url, "127.0.0.1:5999/demo/web:v1.2.0")
        assert int(patched["metadata"]["resourceVersion"]) > int(after["metadata"]["resourceVersion"])
        assert wait_rolled_out(url, 3)["status"]["updatedReplicas"] == 2


def test_a_rollout_cut_short_by_a_stop_completes_after_the_restart(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "sandbox-state.json"
    with sandbox(state, tmp_path, rollout_delay="1h") as slow:
        set_image(slow.url, "127.0.0.1:5999/demo/web:v1.1.0")
        assert request(slow.url + DEPLOYMENT)["status"]["observedGeneration"] == 1  # not rolled out yet
        slow.stop()
    saved = json.loads(state.read_text())
    (deployment,) = [o["object"] for o in saved["objects"] if o["object"]["kind"] == "Deployment"]
    assert deployment["metadata"]["generation"] == 2 and deployment["status"]["observedGeneration"] == 1

    with sandbox(state, tmp_path, rollout_delay="100ms") as again:
        rolled = wait_rolled_out(again.url, 2)
        assert rolled["status"]["updatedReplicas"] == 2
        assert pod_images(again.url) == {"127.0.0.1:5999/demo/web:v1.1.0"}


def test_an_unreadable_state_file_stops_the_sandbox_with_its_name(tmp_path: pathlib.Path) -> None:
    state = tmp_path / "sandbox-state.json"
    state.write_text(json.dumps({"version": 1, "objects": [{"object": {}}]}))
    result = subprocess.run(
        [sys.executable, "-m", "conveyor_sandbox", "--kubeconfig", str(tmp_path / "k"), "--state", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert f"cannot restore {state}: malformed sandbox state" in result.stderr

"""The sandbox cluster through the official Kubernetes client: API semantics and simulated rollouts."""

from __future__ import annotations

import asyncio
import json
import pathlib
import signal
import subprocess
import sys

import pytest
from kubernetes.client.exceptions import ApiException

from conveyor_sandbox import SandboxCluster
from tests.support.kube import KubeClient, image_of, sandbox_cluster
from tests.support.net import eventually, free_port


async def _api_error(call: object) -> ApiException:
    with pytest.raises(ApiException) as caught:
        await asyncio.to_thread(call)  # type: ignore[arg-type]
    return caught.value


async def test_namespaces_can_be_listed_read_and_created(kube: KubeClient) -> None:
    listed = await asyncio.to_thread(kube.core.list_namespace)
    assert [n.metadata.name for n in listed.items] == ["demo"]
    await asyncio.to_thread(kube.core.create_namespace, {"metadata": {"name": "team-b"}})
    read = await asyncio.to_thread(kube.core.read_namespace, "team-b")
    assert read.metadata.name == "team-b" and read.metadata.uid
    missing = await _api_error(lambda: kube.core.read_namespace("nope"))
    assert missing.status == 404
    assert json.loads(missing.body)["message"] == 'namespaces "nope" not found'


async def test_patches_follow_apiserver_semantics(kube: KubeClient) -> None:
    before = await kube.get("Deployment", "demo", "web")
    version = before["metadata"]["resourceVersion"]

    failed_test = await _api_error(
        lambda: kube.apps.patch_namespaced_deployment(
            "web", "demo", [{"op": "test", "path": "/spec/template/spec/containers/0/name", "value": "other"}]
        )
    )
    assert failed_test.status == 422
    stale = await _api_error(
        lambda: kube.apps.patch_namespaced_deployment(
            "web",
            "demo",
            {"metadata": {"resourceVersion": "1"}, "spec": {"replicas": 5}},
            _content_type="application/merge-patch+json",
        )
    )
    assert stale.status == 409

    labelled = await kube._json(
        lambda: kube.apps.patch_namespaced_deployment(
            "web",
            "demo",
            [{"op": "add", "path": "/metadata/labels/tier", "value": "frontend"}],
            _preload_content=False,
        )
    )
    assert labelled["metadata"]["generation"] == 1  # metadata only: no new generation
    assert int(labelled["metadata"]["resourceVersion"]) > int(version)
    scaled = await kube._json(
        lambda: kube.apps.patch_namespaced_deployment(
            "web",
            "demo",
            {"spec": {"replicas": 3}, "status": {"replicas": 99}},
            _content_type="application/merge-patch+json",
            _preload_content=False,
        )
    )
    assert scaled["metadata"]["generation"] == 2
    assert scaled["status"]["replicas"] == 2  # status is not written through the main resource
    status = await kube.set_status("Deployment", "demo", "web", {"replicas": 7})
    assert status["status"]["replicas"] == 7 and status["spec"]["replicas"] == 3
    assert status["metadata"]["generation"] == 2


async def test_strategic_merge_patches_merge_containers_by_name(kube: KubeClient) -> None:
    # What `kubectl set image` sends; the client picks strategic merge for an object body.
    body = {"spec": {"template": {"spec": {"containers": [{"name": "log-shipper", "image": "fluent/fluent-bit:3.1"}]}}}}
    patched = await kube._json(
        lambda: kube.apps.patch_namespaced_deployment("web", "demo", body, _preload_content=False)
    )
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [
        ("app", "registry.example.com/demo/web:1.0.0"),
        ("log-shipper", "fluent/fluent-bit:3.1"),
    ]
    assert containers[1]["args"] == ["-c", "/fluent-bit/etc/fluent-bit.conf"]


async def test_pod_lists_honour_label_selectors(kube: KubeClient) -> None:
    web = await asyncio.to_thread(kube.core.list_namespaced_pod, "demo", label_selector="app=web")
    assert len(web.items) == 2 and all(p.metadata.labels["app"] == "web" for p in web.items)
    others = await asyncio.to_thread(kube.core.list_namespaced_pod, "demo", label_selector="app in (db,agent)")
    assert sorted({p.metadata.labels["app"] for p in others.items}) == ["agent", "db"]
    assert len(others.items) == 4  # two StatefulSet replicas, one DaemonSet pod per sandbox node


PATCH_METHOD = {"Deployment": "deployment", "StatefulSet": "stateful_set", "DaemonSet": "daemon_set"}


@pytest.mark.parametrize(
    ("case", "done"),
    [
        (("Deployment", "web", "app"), lambda s: s["updatedReplicas"] == s["availableReplicas"] == 2),
        (
            ("StatefulSet", "db", "db"),
            lambda s: s["updateRevision"] == s["currentRevision"] and s["readyReplicas"] == 2,
        ),
        (("DaemonSet", "agent", "agent"), lambda s: s["updatedNumberScheduled"] == s["numberAvailable"] == 2),
    ],
)
async def test_a_template_change_rolls_out_after_the_delay(
    kube: KubeClient, sandbox: tuple[SandboxCluster, pathlib.Path], case: tuple[str, str, str], done: object
) -> None:
    cluster, _ = sandbox
    kind, name, container = case
    workload = await kube.get(kind, "demo", name)
    index = [c["name"] for c in workload["spec"]["template"]["spec"]["containers"]].index(container)
    new_image = f"registry.example.com/demo/{name}:2.0.0"
    method = getattr(kube.apps, f"patch_namespaced_{PATCH_METHOD[kind]}")
    ops = [{"op": "replace", "path": f"/spec/template/spec/containers/{index}/image", "value": new_image}]
    await asyncio.to_thread(method, name, "demo", ops)

    async def rolled_out() -> None:
        current = await kube.get(kind, "demo", name)
        status = current["status"]
        assert status["observedGeneration"] == current["metadata"]["generation"] == 2
        assert done(status), status  # type: ignore[operator]

    await eventually(rolled_out, 10)
    pods = cluster.list_objects("Pod", "demo")
    mine = [p for p in pods if p["metadata"]["labels"]["app"] == name]
    assert mine and all(image_of({"spec": {"template": p}}, container) == new_image for p in mine)
    assert all(p["status"]["phase"] == "Running" for p in mine)


async def test_an_unpullable_tag_leaves_the_new_pod_in_image_pull_back_off(
    kube: KubeClient, sandbox: tuple[SandboxCluster, pathlib.Path]
) -> None:
    cluster, _ = sandbox
    broken = "registry.example.com/demo/web:2.0.0-broken"
    await asyncio.to_thread(
        kube.apps.patch_namespaced_deployment,
        "web",
        "demo",
        [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": broken}],
    )

    async def backing_off() -> list[str]:
        new = [
            p
            for p in cluster.list_objects("Pod", "demo")
            if p["metadata"]["labels"].get("app") == "web" and p["spec"]["containers"][0]["image"] == broken
        ]
        assert new
        reasons = [s["state"].get("waiting", {}).get("reason") for s in new[0]["status"]["containerStatuses"]]
        assert reasons[0] == "ImagePullBackOff", reasons
        return reasons

    await eventually(backing_off, 10)
    status = (await kube.get("Deployment", "demo", "web"))["status"]
    assert status["observedGeneration"] == 2
    assert status["updatedReplicas"] == 1 and status["availableReplicas"] == 2  # the old pods keep serving
    old = [
        p
        for p in cluster.list_objects("Pod", "demo")
        if p["metadata"]["labels"]["app"] == "web" and p["spec"]["containers"][0]["image"].endswith("/web:1.0.0")
    ]
    assert len(old) == 2


async def test_with_the_controller_off_nothing_moves(tmp_path: pathlib.Path) -> None:
    async with sandbox_cluster(tmp_path, auto_rollout=False, rollout_delay=0.01) as (cluster, kubeconfig):
        kube = KubeClient(kubeconfig)
        try:
            await asyncio.to_thread(
                kube.apps.patch_namespaced_deployment,
                "web",
                "demo",
                [{"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "x.io/web:2"}],
            )
            await asyncio.sleep(0.3)
            status = (await kube.get("Deployment", "demo", "web"))["status"]
            assert status["observedGeneration"] == 1
            await cluster.complete_rollout("Deployment", "demo", "web")  # on demand
            assert (await kube.get("Deployment", "demo", "web"))["status"]["observedGeneration"] == 2
        finally:
            kube.close()


def test_the_sandbox_runs_as_a_process_and_says_it_is_a_sandbox(tmp_path: pathlib.Path) -> None:
    port = free_port()
    kubeconfig = tmp_path / "sandbox.kubeconfig"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor_sandbox",
            "--port",
            str(port),
            "--kubeconfig",
            str(kubeconfig),
            "--rollout-delay",
            "100ms",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("SANDBOX Kubernetes API emulator (not a real cluster)"), line + process.stderr.read()
        assert f"http://127.0.0.1:{port}" in line and str(kubeconfig) in line
        kube = KubeClient(kubeconfig)
        try:
            assert [d.metadata.name for d in kube.apps.list_namespaced_deployment("demo").items] == ["web"]
        finally:
            kube.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0


def test_the_sandbox_process_rejects_bad_arguments(tmp_path: pathlib.Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "conveyor_sandbox", "--kubeconfig", str(tmp_path / "k"), "--rollout-delay", "soon"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "'soon' is not a duration" in result.stderr

"""Pure domain rules: containers, JSON patches, selectors, deploy records, pod failures, API errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import jsonpatch
import pytest

from conveyor_deployer.domain import pods
from conveyor_deployer.domain.kube_errors import ErrorKind, KubeApiError, classify
from conveyor_deployer.domain.patch import escape_pointer, image_patch
from conveyor_deployer.domain.workloads import (
    ContainerNotFound,
    DeployRecord,
    Kind,
    RecordState,
    WorkloadRef,
    find_container,
    read_record,
    selector_matches,
    selector_string,
)

REF = WorkloadRef("c1", "demo", Kind.DEPLOYMENT, "web")


def workload(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "demo", "resourceVersion": "42"}
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "metadata": meta,
        "spec": {
            "template": {
                "spec": {
                    "initContainers": [{"name": "migrate", "image": "r.io/migrate:1"}],
                    "containers": [{"name": "app", "image": "r.io/app:1"}, {"name": "proxy", "image": "r.io/proxy:1"}],
                }
            }
        },
    }


def test_containers_are_found_before_init_containers_with_their_index() -> None:
    slot = find_container(REF, workload(), "proxy")
    assert (slot.index, slot.init, slot.image, slot.pointer) == (
        1,
        False,
        "r.io/proxy:1",
        "/spec/template/spec/containers/1",
    )
    init = find_container(REF, workload(), "migrate")
    assert (init.index, init.init, init.pointer) == (0, True, "/spec/template/spec/initContainers/0")


def test_a_missing_container_lists_what_exists() -> None:
    with pytest.raises(ContainerNotFound) as caught:
        find_container(REF, workload(), "api")
    assert str(caught.value) == (
        "container 'api' not found in Deployment demo/web in cluster c1: its containers are app, proxy; its init "
        "containers are migrate. Fix the pipeline's target container."
    )


def test_the_image_patch_is_pinned_and_touches_only_the_image_and_annotations() -> None:
    before = workload({"team": "a"})
    slot = find_container(REF, before, "proxy")
    ops = image_patch(before, slot, "r.io/proxy:2", set_annotations={"kubernetes.io/change-cause": "why"})

    assert ops[:3] == [
        {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
        {"op": "test", "path": "/spec/template/spec/containers/1/name", "value": "proxy"},
        {"op": "test", "path": "/spec/template/spec/containers/1/image", "value": "r.io/proxy:1"},
    ]
    after = jsonpatch.apply_patch(before, ops)
    assert after["spec"]["template"]["spec"]["containers"][1]["image"] == "r.io/proxy:2"
    assert after["spec"]["template"]["spec"]["containers"][0] == before["spec"]["template"]["spec"]["containers"][0]
    assert after["metadata"]["annotations"] == {"team": "a", "kubernetes.io/change-cause": "why"}
    moved = workload()
    moved["spec"]["template"]["spec"]["containers"].reverse()  # someone reordered: the test ops refuse
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, ops)


def test_annotations_are_created_when_the_workload_has_none() -> None:
    before = workload()
    ops = image_patch(before, find_container(REF, before, "app"), "r.io/app:2", set_annotations={"a/b": "c"})
    assert {"op": "add", "path": "/metadata/annotations", "value": {"a/b": "c"}} in ops
    assert jsonpatch.apply_patch(before, ops)["metadata"]["annotations"] == {"a/b": "c"}
    assert escape_pointer("deploy.conveyor.dev/app~x") == "deploy.conveyor.dev~1app~0x"


def test_selectors_render_and_match_like_the_api_server() -> None:
    selector = {
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "edge"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
        ],
    }
    assert selector_string(selector) == "app=web,tier in (edge,front),!canary,team"
    assert selector_matches(selector, {"app": "web", "tier": "edge", "team": "x"})
    assert not selector_matches(selector, {"app": "web", "tier": "edge", "team": "x", "canary": "1"})
    assert not selector_matches(selector, {"app": "web", "tier": "back", "team": "x"})
    assert not selector_matches({}, {"app": "web"})


def test_deploy_records_round_trip_and_tolerate_garbage() -> None:
    record = DeployRecord("pipelines/p/runs/r", dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "i:2", "i:1")
    assert DeployRecord.from_json(record.to_json()) == record
    assert DeployRecord.from_json("{not json") is None
    annotated = workload({"deploy.conveyor.dev/app": record.to_json()})
    assert read_record(annotated, "app") == record and read_record(annotated, "proxy") is None
    rolled_back = DeployRecord(record.run, record.requested_at, "i:1", "i:2", RecordState.ROLLED_BACK)
    assert DeployRecord.from_json(rolled_back.to_json()) == rolled_back


def pod(name: str, image: str, statuses: list[dict[str, Any]], labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image}]},
        "status": {"containerStatuses": statuses},
    }


def test_image_pull_failures_name_the_image_cluster_and_registry() -> None:
    failing = pod(
        "web-1",
        "reg.example.com:5000/team/web:2",
        [{"name": "app", "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling"}}}],
    )
    failure = pods.classify([failing], "prod-gz")
    assert failure is not None and failure.reason == "ImagePullBackOff"
    assert failure.message == (
        "the cluster cannot pull reg.example.com:5000/team/web:2: check that cluster prod-gz can reach registry "
        "reg.example.com:5000 and that its pull secret / registry credentials are configured (pod web-1, container "
        "app: ImagePullBackOff: Back-off pulling)"
    )
    err = pod("web-2", "r.io/web:2", [{"name": "app", "state": {"waiting": {"reason": "ErrImagePull"}}}])
    assert pods.classify([err], "c").reason == "ErrImagePull"  # type: ignore[union-attr]
    invalid = pod("web-3", "R.io/Web", [{"name": "app", "state": {"waiting": {"reason": "InvalidImageName"}}}])
    assert "the image reference 'R.io/Web' is invalid" in pods.classify([invalid], "c").message  # type: ignore[union-attr]


def test_crash_loops_report_the_last_termination() -> None:
    crashing = pod(
        "web-1",
        "r.io/web:2",
        [
            {
                "name": "app",
                "restartCount": 5,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }
        ],
    )
    failure = pods.classify([crashing], "c")
    assert failure is not None
    assert failure.message == (
        "container app of pod web-1 keeps crashing (CrashLoopBackOff, 5 restarts): last exit code 137 (OOMKilled)"
    )


def test_starting_pods_are_not_failures_but_explain_a_timeout() -> None:
    starting = pod("web-1", "r.io/web:2", [{"name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}}])
    config_error = pod(
        "web-2",
        "r.io/web:2",
        [
            {
                "name": "app",
                "state": {"waiting": {"reason": "CreateContainerConfigError", "message": 'secret "db" not found'}},
            }
        ],
    )
    assert pods.classify([starting, config_error], "c") is None
    assert pods.waiting_reasons([starting, config_error]) == [
        'pod web-2 container app: CreateContainerConfigError: secret "db" not found'
    ]


def test_new_pods_are_those_of_the_workload_running_the_new_image() -> None:
    selector = {"matchLabels": {"app": "web"}}
    new = pod("a", "r.io/web:2", [])
    old = pod("b", "r.io/web:1", [])
    foreign = pod("c", "r.io/web:2", [], labels={"app": "other"})
    leaving = pod("d", "r.io/web:2", [])
    leaving["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert [
        p["metadata"]["name"] for p in pods.new_pods([new, old, foreign, leaving], selector, "app", "r.io/web:2")
    ] == ["a"]


@pytest.mark.parametrize(
    ("status", "message", "causes", "kind"),
    [
        (None, "connection refused", (), ErrorKind.TRANSIENT),
        (500, "", (), ErrorKind.TRANSIENT),
        (503, "", (), ErrorKind.TRANSIENT),
        (429, "", (), ErrorKind.TRANSIENT),
        (401, "", (), ErrorKind.UNAUTHORIZED),
        (403, "", (), ErrorKind.FORBIDDEN),
        (404, "", (), ErrorKind.NOT_FOUND),
        (409, "", (), ErrorKind.CONFLICT),
        (
            422,
            "the server rejected our request",
            ("testing value /metadata/resourceVersion failed: test failed",),
            ErrorKind.CONFLICT,
        ),
        (422, "spec.template.spec.containers[0].image: Required value", (), ErrorKind.INVALID),
        (400, "", (), ErrorKind.INVALID),
    ],
)
def test_api_errors_are_classified(status: int | None, message: str, causes: tuple[str, ...], kind: ErrorKind) -> None:
    assert classify(status, message, causes) is kind


def test_rbac_and_credential_messages_say_what_to_fix() -> None:
    forbidden = KubeApiError("prod", "list", "pods", "shop", None, 403, "Forbidden", 'pods is forbidden: User "x"')
    assert forbidden.describe() == (
        "RBAC: the deployer is not allowed to list pods in namespace shop in cluster prod (403 Forbidden: pods is "
        'forbidden: User "x"). Grant its user or service account the "list" verb on "pods" there.'
    )
    cluster_wide = KubeApiError("prod", "list", "namespaces", None, None, 403)
    assert "list namespaces cluster-wide in cluster prod" in cluster_wide.describe()
    unauthorized = KubeApiError("prod", "get", "deployments.apps", "shop", "web", 401, "Unauthorized", "")
    assert "rejected the deployer's credentials (401 Unauthorized)" in unauthorized.describe()

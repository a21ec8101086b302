"""End to end (issue 5): the operator's view of a delivery, with every process real.

One system (nats-server, sandbox cluster, config, trigger, deployer) is shared by the module;
each test has its own pipeline and its own Deployment, so they do not interfere. Tests drive it
only from outside: conveyorctl and grpcurl subprocesses, HTTP webhooks, and the Kubernetes API.
"""

from __future__ import annotations

import copy
import hashlib
import json
import pathlib
import secrets
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.system import System, running_system, wait_until
from tests.support.webhook_payloads import SAMPLES

pytestmark = pytest.mark.e2e

HARBOR = "harbor.example.com"
SAMPLE_APP_IMAGE = "registry.example.com/demo/web:1.0.0"
SAMPLE_SIDECAR_IMAGE = "docker.io/fluent/fluent-bit:3.0.7"
SAMPLE_INIT_IMAGE = "registry.example.com/demo/web-migrate:1.0.0"
SEMVER_FILTER = r"regex:^v\d+\.\d+\.\d+$"
# Every simulated rollout takes this long: long enough to act on a run while it is in progress.
ROLLOUT_DELAY = "3s"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    # harbor.example.com is fictional: StartPipeline deploys by tag without asking it (the
    # registry checks are covered against a real registry in test_e2e_registry).
    with running_system(
        tmp_path_factory.mktemp("e2e-delivery"),
        rollout_delay=ROLLOUT_DELAY,
        extra_env={"CONVEYOR_CONFIG_REGISTRY_CHECK": "false"},
    ) as running:
        yield running


def create_pipeline(system: System, name: str, repository: str, *extra: str) -> None:
    system.ctl(
        "pipelines",
        "create",
        name,
        "--image",
        f"{HARBOR}/{repository}",
        "--tag-filter",
        SEMVER_FILTER,
        "--platform",
        "kubernetes",
        "--region",
        "local",
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
        *extra,
    )


def harbor_push(repository: str, tag: str, digest: str) -> bytes:
    """A Harbor 2.x PUSH_ARTIFACT webhook (Default payload format) for HARBOR/REPOSITORY:TAG."""
    payload: dict[str, Any] = copy.deepcopy(SAMPLES["harbor-push"].json())
    namespace, _, name = repository.rpartition("/")
    payload["event_data"]["resources"] = [
        {"digest": digest, "tag": tag, "resource_url": f"{HARBOR}/{repository}:{tag}"}
    ]
    payload["event_data"]["repository"].update(name=name, namespace=namespace, repo_full_name=repository)
    payload["operator"] = "e2e-ci"
    return json.dumps(payload).encode()


def random_digest() -> str:
    return "sha256:" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()


def steps_in_order(entries: list[dict[str, Any]], wanted: list[str]) -> list[dict[str, Any]]:
    """The first entry of each wanted step, asserting they appear in that order."""
    found: list[dict[str, Any]] = []
    position = 0
    for step in wanted:
        while position < len(entries) and entries[position].get("step") != step:
            position += 1
        assert position < len(entries), f"no {step!r} step after {[e['step'] for e in found]}: {entries}"
        found.append(entries[position])
    return found


def test_a_harbor_push_deploys_the_named_container_and_the_run_tells_the_story(system: System) -> None:
    system.create_deployment("storefront")
    create_pipeline(system, "storefront", "e2e/storefront")
    digest = random_digest()

    status, body = system.post_webhook("harbor", harbor_push("e2e/storefront", "v1.2.3", digest))
    assert status == 200, body
    assert len(json.loads(body)["stored"]) == 1

    [run] = system.wait_for_runs("storefront")
    new_image = f"{HARBOR}/e2e/storefront:v1.2.3"
    assert run["state"] == "SUCCEEDED", run
    assert run["trigger"] == "PUSH"
    assert (run["image"], run["tag"], run["digest"]) == (new_image, "v1.2.3", digest)
    assert run["previousImage"] == SAMPLE_APP_IMAGE
    assert run["eventId"].startswith("harbor:")

    # The cluster: only the named container changed.
    assert system.generation("storefront") == 2  # created, then patched once
    assert system.images("storefront") == {
        "app": new_image,
        "log-shipper": SAMPLE_SIDECAR_IMAGE,
        "migrate": SAMPLE_INIT_IMAGE,
    }

    # The run's log: trigger match, target, current image, patch, rollout, result.
    entries = system.run_log(run["name"])
    trigger, target, current, patch, rollout, result = steps_in_order(
        entries, ["trigger", "resolve-target", "current-image", "patch", "rollout", "result"]
    )
    assert "matched pipelines/storefront" in trigger["message"] and "v1.2.3" in trigger["message"]
    assert "Deployment demo/storefront" in target["message"] and "sandbox" in target["message"]
    assert SAMPLE_APP_IMAGE in current["message"]
    assert f"{SAMPLE_APP_IMAGE} -> {new_image}" in patch["message"]
    assert any("successfully rolled out" in e["message"] for e in entries if e["step"] == "rollout"), rollout
    assert result["level"] == "INFO" and "succeeded" in result["message"]

    # The same story for a human, from `conveyorctl runs logs`.
    shown = system.ctl("runs", "logs", run["name"]).stdout
    for text in ("matched pipelines/storefront", "resolve-target", "current-image", "patch sent", "rolled out"):
        assert text in shown, shown

    # And the push in `events list`, with the decision and the run.
    [event] = system.events("e2e/storefront")
    assert event["push"]["tag"] == "v1.2.3" and event["push"]["sourceFormat"] == "harbor"
    [decision] = event["decisions"]
    assert decision["outcome"] == "MATCHED"
    assert decision["run"] == run["name"]


def test_a_push_whose_tag_does_not_match_starts_no_run_and_events_list_says_why(system: System) -> None:
    system.create_deployment("catalog")
    create_pipeline(system, "catalog", "e2e/catalog")

    status, body = system.post_webhook("harbor", harbor_push("e2e/catalog", "dev-42", random_digest()))
    assert status == 200, body

    def decided() -> dict[str, Any]:
        events = system.events("e2e/catalog")
        assert events and events[0].get("decisions"), events
        return events[0]

    event = wait_until(decided)
    [decision] = event["decisions"]
    assert decision["pipeline"] == "pipelines/catalog"
    assert decision["outcome"] == "TAG_MISMATCH"
    assert "dev-42" in decision["reason"] and r"^v\d+\.\d+\.\d+$" in decision["reason"]
    assert not decision.get("run")
    table = system.ctl("events", "list", "--repository", "e2e/catalog").stdout
    assert "TAG_MISMATCH" in table and "does not match" in table

    assert system.runs("catalog") == []
    assert system.images("catalog")["app"] == SAMPLE_APP_IMAGE


def test_manual_start_failed_rollout_rollback_and_deleting_runs_then_the_pipeline(system: System) -> None:
    system.create_deployment("checkout")
    create_pipeline(system, "checkout", "e2e/checkout", "--rollback-on-failure")

    # A manual start with a chosen tag.
    started = system.ctl("pipelines", "start", "checkout", "--tag", "v2.0.0", "-o", "json").json()
    assert started["trigger"] == "MANUAL" and started["state"] in {"QUEUED", "RUNNING"}
    good = system.wait_for_run(started["name"])
    good_image = f"{HARBOR}/e2e/checkout:v2.0.0"
    assert good["state"] == "SUCCEEDED", good
    assert good["image"] == good_image and good["previousImage"] == SAMPLE_APP_IMAGE
    assert system.images("checkout")["app"] == good_image

    # A tag the cluster cannot pull: the run fails with the pull error and the image is restored.
    started = system.ctl("pipelines", "start", "checkout", "--tag", "v2.1.0-broken", "-o", "json").json()
    broken_image = f"{HARBOR}/e2e/checkout:v2.1.0-broken"
    failed = system.wait_for_run(started["name"])
    assert failed["state"] == "FAILED", failed
    assert failed["image"] == broken_image and failed["previousImage"] == good_image
    error = failed["error"]
    assert f"cannot pull {broken_image}" in error, error
    assert "ErrImagePull" in error or "ImagePullBackOff" in error, error
    assert f"rolled back container 'app' to {good_image}" in error, error
    assert system.images("checkout") == {
        "app": good_image,
        "log-shipper": SAMPLE_SIDECAR_IMAGE,
        "migrate": SAMPLE_INIT_IMAGE,
    }
    rollback = [e for e in system.run_log(failed["name"]) if e["step"] == "rollback"]
    assert any(f"rolled back container 'app' to {good_image}" in e["message"] for e in rollback), rollback

    # While a run is in progress, neither it nor its pipeline can be deleted.
    active = refused_while_active(system, "checkout")
    finished = system.wait_for_run(active)
    assert finished["state"] == "SUCCEEDED", finished

    # Finished runs can be deleted, then the pipeline.
    runs = system.runs("checkout")
    assert {r["name"] for r in runs} == {good["name"], failed["name"], active}
    for run in runs:
        assert system.ctl("runs", "delete", run["name"]).stdout.strip() == f"{run['name']} deleted"
    assert system.runs("checkout") == []
    missing = system.ctl("runs", "get", good["name"], expect=3)
    assert "NOT_FOUND" in missing.stderr
    assert system.ctl("pipelines", "delete", "checkout", "--yes").stdout.strip() == "pipelines/checkout deleted"
    gone = system.ctl("pipelines", "get", "checkout", expect=3)
    assert gone.stderr.startswith("error: NOT_FOUND:"), gone
    # Conveyor never deletes workloads: the Deployment keeps the last deployed image.
    assert system.images("checkout")["app"] == finished["image"] == f"{HARBOR}/e2e/checkout:v3.0.0"


def refused_while_active(system: System, pipeline: str) -> str:
    """Start a run, then try to delete its pipeline and the run while it is in progress: both refused.

    The module's sandbox takes ROLLOUT_DELAY for every rollout, so the run stays in progress for
    that long after `pipelines start` returns. The deletes go through grpcurl (a native binary that
    starts in milliseconds) so they take a small fraction of that window even on a loaded machine;
    conveyorctl's own error rendering of FAILED_PRECONDITION is covered by its integration tests.
    """
    started = system.ctl("pipelines", "start", pipeline, "--tag", "v3.0.0", "-o", "json").json()
    assert started["state"] == "QUEUED", started
    config = system.config_addr
    refused_pipeline = system.grpcurl(
        "-d",
        json.dumps({"name": f"pipelines/{pipeline}"}),
        config,
        "conveyor.v1.PipelineService/DeletePipeline",
        expect=None,
    )
    refused_run = system.grpcurl(
        "-d", json.dumps({"name": started["name"]}), config, "conveyor.v1.RunService/DeleteRun", expect=None
    )
    assert "Code: FailedPrecondition" in refused_pipeline.stderr, refused_pipeline
    assert "runs in progress" in refused_pipeline.stderr and started["name"] in refused_pipeline.stderr
    assert "Code: FailedPrecondition" in refused_run.stderr, refused_run
    assert "has not finished" in refused_run.stderr, refused_run
    system.ctl("pipelines", "get", pipeline)  # still there
    return str(started["name"])


@pytest.mark.parametrize(
    ("service", "names"),
    [
        ("config", ["conveyor.v1.PipelineService", "conveyor.v1.RunService"]),
        ("trigger", ["conveyor.v1.EventService"]),
        ("deployer", ["conveyor.v1.TargetService"]),
    ],
)
def test_grpcurl_lists_each_service_with_health_and_reflection(system: System, service: str, names: list[str]) -> None:
    address = system.addresses[service]
    listed = system.grpcurl(address, "list").stdout.split()
    assert sorted(listed) == sorted([*names, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"])

    overall = json.loads(system.grpcurl(address, "grpc.health.v1.Health/Check").stdout)
    assert overall == {"status": "SERVING"}
    for name in names:
        checked = system.grpcurl("-d", json.dumps({"service": name}), address, "grpc.health.v1.Health/Check")
        assert json.loads(checked.stdout) == {"status": "SERVING"}
        described = system.grpcurl(address, "describe", name).stdout
        assert f"service {name.rsplit('.', 1)[1]} {{" in described and "rpc " in described
    unknown = system.grpcurl(
        "-d", '{"service": "no.such.Service"}', address, "grpc.health.v1.Health/Check", expect=None
    )
    assert unknown.code != 0 and "NotFound" in unknown.stderr


def test_grpcurl_calls_the_api_through_reflection(system: System) -> None:
    clusters = json.loads(system.grpcurl(system.deployer_addr, "conveyor.v1.TargetService/ListClusters").stdout)
    assert [c["name"] for c in clusters["clusters"]] == ["sandbox"]
    bad = system.grpcurl(
        "-d",
        '{"pipeline": {"name": "pipelines/x"}}',
        system.config_addr,
        "conveyor.v1.PipelineService/CreatePipeline",
        expect=None,
    )
    assert bad.code != 0 and "InvalidArgument" in bad.stderr, bad
    assert pathlib.Path(system.workdir / "data" / "conveyor.db").exists()  # config runs on SQLite

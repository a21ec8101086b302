"""End to end: one push is one connected trace across the three services (issue 10 §3).

Every process is real (tests/support/system.py) with `CONVEYOR_TRACING=otlp`, exporting to an
OTLP/HTTP receiver in this test. A Harbor webhook is pushed; the spans the trigger, deployer and
config send must form one tree rooted at the webhook: webhook -> store -> match -> DeployRequested
-> deploy (patch, verify) -> RunEvent persisted, the run's spans naming it. The same holds for a
manual start (through config's outbox) and for gRPC calls between the services (metadata).
"""

from __future__ import annotations

import copy
import hashlib
import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.support.system import System, running_system, wait_until
from tests.support.tracing import OtlpReceiver, Span, ancestors, tree_problems
from tests.support.webhook_payloads import SAMPLES

pytestmark = pytest.mark.e2e

HARBOR = "harbor.example.com"
PIPELINE = "traced"
REPOSITORY = "e2e/traced"
WEBHOOK = "POST /webhooks/{format}"
SERVICES = {"conveyor-trigger", "conveyor-deployer", "conveyor-config"}
# Subjects whose every publish has a consumer in the system: a trace is complete when each has its process span.
CONSUMED = ("conveyor.registry.pushed", "conveyor.deploy.requested", "conveyor.runs.events")


@dataclass
class Traced:
    system: System
    receiver: OtlpReceiver


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    with (
        OtlpReceiver() as receiver,
        running_system(
            tmp_path_factory.mktemp("e2e-tracing"),
            extra_env={
                "CONVEYOR_TRACING": "otlp",
                "CONVEYOR_OTLP_ENDPOINT": receiver.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "200",  # ms: spans arrive while the test waits, not only at exit
                # harbor.example.com is fictional: manual starts deploy by tag without asking it.
                "CONVEYOR_CONFIG_REGISTRY_CHECK": "false",
            },
        ) as system,
    ):
        system.create_deployment(PIPELINE)
        system.ctl(
            "pipelines", "create", PIPELINE, "--image", f"{HARBOR}/{REPOSITORY}",
            "--tag-filter", r"regex:^v\d+\.\d+\.\d+$", "--platform", "kubernetes", "--region", "local",
            "--cluster", "sandbox", "--namespace", "demo", "--kind", "deployment", "--workload", PIPELINE,
            "--container", "app",
        )  # fmt: skip
        yield Traced(system, receiver)


def harbor_push(tag: str) -> bytes:
    payload: dict[str, Any] = copy.deepcopy(SAMPLES["harbor-push"].json())
    digest = "sha256:" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()
    namespace, _, name = REPOSITORY.rpartition("/")
    payload["event_data"]["resources"] = [
        {"digest": digest, "tag": tag, "resource_url": f"{HARBOR}/{REPOSITORY}:{tag}"}
    ]
    payload["event_data"]["repository"].update(name=name, namespace=namespace, repo_full_name=REPOSITORY)
    return json.dumps(payload).encode()


def complete_trace(receiver: OtlpReceiver, root: str, run: str, timeout: float = 30.0) -> list[Span]:
    """The spans of the trace whose root is named `root` and whose deploy names `run`, once every
    message published in it has been processed and persisted. The deploy span ends after the run's
    last publish, so once it is here every publish of the trace is too."""

    def complete() -> list[Span]:
        spans = receiver.spans()
        deploys = [s for s in spans if s.name == "deploy" and s.attributes.get("conveyor.run") == run]
        assert deploys, f"no deploy span of {run} yet"
        trace = [s for s in spans if s.trace_id == deploys[0].trace_id]
        assert any(s.name == root and not s.parent_id for s in trace), f"no root {root!r} yet"
        children = {(s.parent_id, s.name) for s in trace}
        for publish in (s for s in trace if s.name.startswith("publish ")):
            subject = publish.name.removeprefix("publish ")
            if subject in CONSUMED:
                assert (publish.span_id, f"process {subject}") in children, f"{publish.name} not processed yet"
        for process in (s for s in trace if s.name == "process conveyor.runs.events"):
            assert (process.span_id, "persist") in children, "a RunEvent not persisted yet"
        return trace

    return wait_until(complete, timeout)


def chain(span: Span, trace: list[Span]) -> list[tuple[str, str]]:
    """(service, name) of `span` and each of its ancestors, up to the root."""
    return [(item.service, item.name) for item in [span, *ancestors(span, trace)]]


def test_one_push_is_one_connected_trace_across_the_three_services(traced: Traced) -> None:
    system, receiver = traced.system, traced.receiver
    status, body = system.post_webhook("harbor", harbor_push("v1.0.0"))
    assert status == 200, body
    [run] = system.wait_for_runs(PIPELINE)
    assert run["state"] == "SUCCEEDED", run
    name = run["name"]

    trace = complete_trace(receiver, WEBHOOK, name)
    assert tree_problems(trace) == []
    assert {span.service for span in trace} == SERVICES
    [root] = [span for span in trace if not span.parent_id]
    assert (root.service, root.name, root.kind) == ("conveyor-trigger", WEBHOOK, "SERVER")
    assert root.attributes["http.response.status_code"] == 200

    # A rollout step's RunEvent, persisted by config: its ancestry is the whole story of the push.
    persisted = [s for s in trace if s.name == "persist" and ("deployer", "verify") in _short(chain(s, trace))]
    assert persisted, [chain(s, trace) for s in trace if s.name == "persist"]
    assert chain(persisted[0], trace) == [
        ("conveyor-config", "persist"),
        ("conveyor-config", "process conveyor.runs.events"),
        ("conveyor-deployer", "publish conveyor.runs.events"),
        ("conveyor-deployer", "verify"),
        ("conveyor-deployer", "deploy"),
        ("conveyor-deployer", "process conveyor.deploy.requested"),
        ("conveyor-trigger", "publish conveyor.deploy.requested"),
        ("conveyor-trigger", "request run"),
        ("conveyor-trigger", "match"),
        ("conveyor-trigger", "process conveyor.registry.pushed"),
        ("conveyor-trigger", "publish conveyor.registry.pushed"),
        ("conveyor-trigger", WEBHOOK),
    ]
    by_name = {span.name: span for span in trace}
    assert by_name["patch"].parent_id == by_name["deploy"].span_id
    assert by_name["deploy"].attributes["conveyor.state"] == "SUCCEEDED"
    # The trigger's QUEUED event is persisted in the same trace, under the run's request.
    queued = [s for s in trace if s.name == "persist" and ("trigger", "request run") in _short(chain(s, trace))]
    assert queued

    # The run's spans name it: the full resource name and the pipeline.
    for span_name in ("request run", "publish conveyor.deploy.requested", "deploy", "patch", "verify", "persist"):
        for span in (s for s in trace if s.name == span_name):
            assert span.attributes.get("conveyor.run") == name, (span_name, span.attributes)
            assert span.attributes.get("conveyor.pipeline") == PIPELINE, (span_name, span.attributes)
    assert by_name["match"].attributes["conveyor.matched"] == 1


def test_a_manual_start_continues_its_rpc_trace_through_the_outbox(traced: Traced) -> None:
    system, receiver = traced.system, traced.receiver
    started = system.ctl("pipelines", "start", PIPELINE, "--tag", "v2.0.0", "-o", "json").json()
    run = system.wait_for_run(started["name"])
    assert run["state"] == "SUCCEEDED", run

    start = "conveyor.v1.PipelineService/StartPipeline"
    trace = complete_trace(receiver, start, run["name"])
    assert tree_problems(trace) == []
    assert {span.service for span in trace} == {"conveyor-config", "conveyor-deployer"}
    deploy = next(span for span in trace if span.name == "deploy")
    assert chain(deploy, trace) == [
        ("conveyor-deployer", "deploy"),
        ("conveyor-deployer", "process conveyor.deploy.requested"),
        ("conveyor-config", "publish conveyor.deploy.requested"),
        ("conveyor-config", start),
    ]


def test_grpc_calls_between_the_services_carry_the_trace(traced: Traced) -> None:
    """CreatePipeline asked the deployer whether the target exists: config's call is the parent of the
    deployer's RPC span, across the two processes."""

    def deployer_calls() -> list[Span]:
        found = [s for s in traced.receiver.spans() if s.service == "conveyor-deployer" and s.kind == "SERVER"]
        assert found, "no RPC span from the deployer yet"
        return found

    served = wait_until(deployer_calls)
    spans = traced.receiver.spans()
    chains = [_short(chain(span, spans)) for span in served]
    assert any(
        [service for service, _ in found[:3]] == ["deployer", "config", "config"]
        and found[2][1] == "conveyor.v1.PipelineService/CreatePipeline"
        for found in chains
    ), chains
    # The trigger's pipeline cache loads from config over gRPC: config's span is the child of the trigger's call.
    listed = [s for s in spans if s.service == "conveyor-config" and s.name.endswith("/ListPipelines")]
    assert any(_short(chain(span, spans))[:2] == [("config", span.name), ("trigger", span.name)] for span in listed)


def _short(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(service.removeprefix("conveyor-"), name) for service, name in items]

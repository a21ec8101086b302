"""Rollout status per kind, as `kubectl rollout status` reports it."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor_deployer.domain.rollout import evaluate
from conveyor_deployer.domain.workloads import Kind


def obj(spec: dict[str, Any], status: dict[str, Any], generation: int = 2, name: str = "web") -> dict[str, Any]:
    return {"metadata": {"name": name, "generation": generation}, "spec": spec, "status": status}


DEPLOYMENT_CASES = [
    (obj({"replicas": 3}, {"observedGeneration": 1}), False, "Waiting for deployment spec update to be observed..."),
    (
        obj({"replicas": 3}, {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 4}),
        False,
        "Waiting for deployment 'web' rollout to finish: 1 out of 3 new replicas have been updated...",
    ),
    (
        obj({"replicas": 3}, {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 4}),
        False,
        "Waiting for deployment 'web' rollout to finish: 1 old replicas are pending termination...",
    ),
    (
        obj({"replicas": 3}, {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 2}),
        False,
        "Waiting for deployment 'web' rollout to finish: 2 of 3 updated replicas are available...",
    ),
    (
        obj({"replicas": 3}, {"observedGeneration": 2, "updatedReplicas": 3, "replicas": 3, "availableReplicas": 3}),
        True,
        "deployment 'web' successfully rolled out",
    ),
    (obj({"replicas": 0}, {"observedGeneration": 2}), True, "deployment 'web' successfully rolled out"),
]


@pytest.mark.parametrize(("workload", "done", "message"), DEPLOYMENT_CASES)
def test_deployment_status(workload: dict[str, Any], done: bool, message: str) -> None:
    status = evaluate(Kind.DEPLOYMENT, workload)
    assert (status.done, status.message, status.error) == (done, message, None)


def test_a_deployment_past_its_progress_deadline_is_an_error() -> None:
    workload = obj(
        {"replicas": 2, "progressDeadlineSeconds": 600},
        {
            "observedGeneration": 2,
            "updatedReplicas": 1,
            "conditions": [
                {"type": "Available", "status": "True"},
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": 'ReplicaSet "web-5d" has timed out progressing.',
                },
            ],
        },
    )
    status = evaluate(Kind.DEPLOYMENT, workload)
    assert not status.done
    assert status.error == (
        "deployment 'web' exceeded its progress deadline (600s): ReplicaSet \"web-5d\" has timed out progressing."
    )


def test_a_paused_deployment_is_an_error_rather_than_an_endless_wait() -> None:
    status = evaluate(Kind.DEPLOYMENT, obj({"replicas": 2, "paused": True}, {"observedGeneration": 1}))
    assert status.error is not None and "kubectl rollout resume deployment/web" in status.error


def sts(status: dict[str, Any], *, partition: int | None = None, strategy: str = "RollingUpdate") -> dict[str, Any]:
    update: dict[str, Any] = {"type": strategy}
    if partition is not None:
        update["rollingUpdate"] = {"partition": partition}
    return obj({"replicas": 3, "updateStrategy": update}, status, name="db")


STATEFULSET_CASES = [
    (sts({}), False, "Waiting for statefulset spec update to be observed..."),
    (sts({"observedGeneration": 2, "readyReplicas": 2}), False, "Waiting for 1 pods to be ready..."),
    (
        sts({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 1}, partition=1),
        False,
        "Waiting for partitioned roll out to finish: 1 out of 2 new pods have been updated...",
    ),
    (
        sts({"observedGeneration": 2, "readyReplicas": 3, "updatedReplicas": 2}, partition=1),
        True,
        "partitioned roll out complete: 2 new pods have been updated...",
    ),
    (
        sts(
            {
                "observedGeneration": 2,
                "readyReplicas": 3,
                "updatedReplicas": 2,
                "currentRevision": "db-1",
                "updateRevision": "db-2",
            }
        ),
        False,
        "waiting for statefulset rolling update to complete 2 pods at revision db-2...",
    ),
    (
        sts(
            {
                "observedGeneration": 2,
                "readyReplicas": 3,
                "updatedReplicas": 3,
                "currentReplicas": 3,
                "currentRevision": "db-2",
                "updateRevision": "db-2",
            }
        ),
        True,
        "statefulset rolling update complete 3 pods at revision db-2...",
    ),
]


@pytest.mark.parametrize(("workload", "done", "message"), STATEFULSET_CASES)
def test_statefulset_status(workload: dict[str, Any], done: bool, message: str) -> None:
    status = evaluate(Kind.STATEFULSET, workload)
    assert (status.done, status.message, status.error) == (done, message, None)


def test_an_on_delete_statefulset_is_not_waited_for() -> None:
    status = evaluate(Kind.STATEFULSET, sts({"observedGeneration": 2}, strategy="OnDelete"))
    assert status.done and "OnDelete update strategy" in status.message


def ds(status: dict[str, Any]) -> dict[str, Any]:
    return obj({"updateStrategy": {"type": "RollingUpdate"}}, status, name="agent")


DAEMONSET_CASES = [
    (ds({"observedGeneration": 1}), False, "Waiting for daemon set spec update to be observed..."),
    (
        ds({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 1}),
        False,
        "Waiting for daemon set 'agent' rollout to finish: 1 out of 3 new pods have been updated...",
    ),
    (
        ds({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 2}),
        False,
        "Waiting for daemon set 'agent' rollout to finish: 2 of 3 updated pods are available...",
    ),
    (
        ds({"observedGeneration": 2, "desiredNumberScheduled": 3, "updatedNumberScheduled": 3, "numberAvailable": 3}),
        True,
        "daemon set 'agent' successfully rolled out",
    ),
]


@pytest.mark.parametrize(("workload", "done", "message"), DAEMONSET_CASES)
def test_daemonset_status(workload: dict[str, Any], done: bool, message: str) -> None:
    status = evaluate(Kind.DAEMONSET, workload)
    assert (status.done, status.message, status.error) == (done, message, None)

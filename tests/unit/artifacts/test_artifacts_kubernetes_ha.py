"""deploy/kubernetes, high availability: two replicas of every service, spread, budgeted, rolled without Recreate."""

from __future__ import annotations

from tests.unit.artifacts.test_artifacts_kubernetes import deployments, objects_of


def _pod_labels(deployment: dict) -> dict:
    return dict(deployment["spec"]["template"]["metadata"]["labels"])


def test_every_service_runs_two_replicas_rolled_one_at_a_time_never_recreated() -> None:
    for service, deployment in deployments().items():
        spec = deployment["spec"]
        assert spec["replicas"] == 2, service
        strategy = spec["strategy"]
        assert strategy["type"] == "RollingUpdate", service
        assert strategy["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}, service


def test_every_service_has_a_disruption_budget_keeping_one_replica() -> None:
    budgets = objects_of("PodDisruptionBudget")
    for service, deployment in deployments().items():
        mine = [b for b in budgets if b["spec"]["selector"]["matchLabels"].items() <= _pod_labels(deployment).items()]
        assert len(mine) == 1, service
        assert mine[0]["spec"]["minAvailable"] == 1
        assert mine[0]["spec"]["minAvailable"] < deployment["spec"]["replicas"]  # a drain can still proceed
    assert len(budgets) == len(deployments())


def test_replicas_are_spread_over_nodes_and_zones() -> None:
    for service, deployment in deployments().items():
        constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert keys == {"kubernetes.io/hostname", "topology.kubernetes.io/zone"}, service
        for constraint in constraints:
            assert constraint["maxSkew"] == 1
            # Soft: a one-node cluster still schedules both replicas.
            assert constraint["whenUnsatisfiable"] == "ScheduleAnyway"
            assert constraint["labelSelector"]["matchLabels"].items() <= _pod_labels(deployment).items(), service

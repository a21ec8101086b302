"""End to end (issue 10): every metric deploy/monitoring/ uses is served by the running services, and a push
is measured from the registry's push time to the verified rollout.

The whole system runs with each service's /metrics on (CONVEYOR_<SERVICE>_METRICS_ADDR, as `make run` sets
them); one push deploys and one webhook is rejected, so the series the rules and panels select exist.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from conveyor import bus
from tests.support import monitoring
from tests.support.monitoring import Exported
from tests.support.net import free_port
from tests.support.system import System, running_system, wait_until

pytestmark = pytest.mark.e2e

REGISTRY = "registry.example.com"
REPOSITORY = "e2e/metered"
# The registry reported the push this long before the webhook arrives (a slow notification queue).
REPORTED_EARLIER = 60.0
DURABLES = {
    "config": bus.CONFIG_RUN_EVENTS_DURABLE,
    "trigger": bus.TRIGGER_MATCHER_DURABLE,
    "deployer": bus.DEPLOYER_DURABLE,
}
# Added by Prometheus when it scrapes, so never in a /metrics page.
TARGET_LABELS = {"job", "instance"}


@dataclass
class Metered:
    system: System
    metrics: dict[str, str]  # service -> HOST:PORT of its /metrics

    def scrape(self, service: str) -> Exported:
        with urllib.request.urlopen(f"http://{self.metrics[service]}/metrics", timeout=10) as response:
            assert response.status == 200
            return Exported.parse(response.read().decode())


@dataclass(frozen=True)
class Traffic:
    posted: float  # time.time() when the push was posted
    seen: float  # time.time() once its run had SUCCEEDED


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Metered]:
    addresses = {service: f"127.0.0.1:{free_port()}" for service in DURABLES}
    env = {f"CONVEYOR_{service.upper()}_METRICS_ADDR": address for service, address in addresses.items()}
    env["CONVEYOR_CONFIG_REGISTRY_CHECK"] = "false"  # registry.example.com is fictional
    with running_system(tmp_path_factory.mktemp("e2e-monitoring"), extra_env=env) as system:
        yield Metered(system, addresses)


def distribution_push(tag: str, pushed_at: dt.datetime) -> bytes:
    event = {
        "id": f"metered-{tag}",
        "timestamp": pushed_at.isoformat().replace("+00:00", "Z"),
        "action": "push",
        "target": {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "repository": REPOSITORY,
            "tag": tag,
            "digest": "sha256:" + "5" * 64,
        },
        "request": {"host": REGISTRY},
    }
    return json.dumps({"events": [event]}).encode()


@pytest.fixture(scope="module")
def traffic(metered: Metered) -> Traffic:
    system = metered.system
    system.create_deployment("metered")
    system.ctl(
        "pipelines", "create", "metered", "--image", f"{REGISTRY}/{REPOSITORY}",
        "--tag-filter", r"regex:^v\d+\.\d+\.\d+$", "--platform", "kubernetes", "--region", "local",
        "--cluster", "sandbox", "--namespace", "demo", "--kind", "deployment", "--workload", "metered",
        "--container", "app",
    )  # fmt: skip
    posted = time.time()
    pushed_at = dt.datetime.fromtimestamp(posted - REPORTED_EARLIER, dt.UTC)
    headers = {"Content-Type": "application/vnd.docker.distribution.events.v1+json"}
    status, body = system.post_webhook("distribution", distribution_push("v1.0.1", pushed_at), headers)
    assert status == 200, body
    [run] = system.wait_for_runs("metered")
    assert run["state"] == "SUCCEEDED", run
    seen = time.time()
    status, _ = system.post_webhook("distribution", distribution_push("v1.0.2", pushed_at), headers, token="wrong")
    assert status == 401
    return Traffic(posted, seen)


def test_a_push_is_measured_from_the_registry_push_time_to_the_verified_rollout(
    metered: Metered, traffic: Traffic
) -> None:
    def observed() -> Exported:
        page = metered.scrape("deployer")
        assert page.value("conveyor_push_to_ready_seconds_count", cluster="sandbox") == 1.0
        return page

    page = wait_until(observed, timeout=10)
    seconds = page.value("conveyor_push_to_ready_seconds_sum", cluster="sandbox")
    assert seconds is not None
    # From the reported push time, not from when the webhook or the deploy request arrived.
    assert REPORTED_EARLIER <= seconds <= REPORTED_EARLIER + (traffic.seen - traffic.posted) + 1.0
    assert page.value("conveyor_push_to_ready_seconds_bucket", cluster="sandbox", le="60.0") == 0.0
    assert page.value("conveyor_push_to_ready_seconds_bucket", cluster="sandbox", le="+Inf") == 1.0


def test_every_metric_the_rules_and_the_dashboard_use_is_served(metered: Metered, traffic: Traffic) -> None:
    def lag_reported(service: str) -> Exported:
        page = metered.scrape(service)
        assert page.value("conveyor_bus_consumer_pending", consumer=DURABLES[service]) is not None, service
        return page

    pages = {service: wait_until(functools.partial(lag_reported, service), timeout=10) for service in DURABLES}
    assert pages["trigger"].value(
        "conveyor_trigger_webhook_rejected_total", format="distribution", reason="unauthorized"
    )
    served = pages["config"].merge(pages["trigger"]).merge(pages["deployer"])

    queries = monitoring.rule_queries() + monitoring.dashboard_queries()
    problems = []
    for query in queries:
        names = monitoring.metric_names(query.expr)
        problems += [f"{query.where}: {name} is not served" for name in sorted(names - served.names)]
        for name, labels in monitoring.label_matchers(query.expr).items():
            if name in served.labels:  # only series with samples show their labels
                problems += [f"{query.where}: {name} has no label {label}" for label in labels - served.labels[name]]
        known = set().union(*(served.labels.get(name, set()) for name in names))
        if known:
            grouped = monitoring.grouping_labels(query.expr) - TARGET_LABELS
            problems += [f"{query.where}: no metric of it has label {label}" for label in sorted(grouped - known)]
    assert not problems, "\n".join(problems)

"""deploy/monitoring/: the alerting rules and the dashboard pass promtool, their own unit tests, and name
metrics the services define (tests/e2e/test_e2e_monitoring.py checks the running services serve them).

promtool is required, never skipped: Debian's `prometheus` package (installed by scripts/bootstrap.sh test).
"""

from __future__ import annotations

import pathlib
import re

import yaml
from prometheus_client import REGISTRY, generate_latest

import conveyor_config.metrics
import conveyor_deployer.metrics
import conveyor_trigger.metrics
from tests.support import monitoring
from tests.support.monitoring import Exported


def test_the_rules_pass_promtool_check() -> None:
    checked = monitoring.run_promtool("check", "rules", str(monitoring.RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(monitoring.rules())} rules found" in checked.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    suites = sorted(monitoring.RULE_TESTS.glob("*.yaml"))
    assert suites, f"no promtool rule tests in {monitoring.RULE_TESTS}"
    tested = set()
    for suite in suites:
        result = monitoring.run_promtool("test", "rules", str(suite))
        assert result.returncode == 0, f"{suite}:\n{result.stdout}{result.stderr}"
        document = yaml.safe_load(suite.read_text())
        tested |= {case["alertname"] for test in document["tests"] for case in test.get("alert_rule_test", [])}
    alerts = {rule["alert"] for rule in monitoring.rules()}
    # The four signals issue 10 asks for each have a unit test.
    assert (
        {
            "ConveyorRunsFailing",
            "ConveyorRunStuckRunning",
            "ConveyorConsumerLagging",
            "ConveyorWebhooksRejected",
        }
        <= tested
        <= alerts
    )


def test_every_dashboard_query_is_valid_promql(tmp_path: pathlib.Path) -> None:
    # promtool parses PromQL only in rule files: one recording rule per query.
    queries = monitoring.dashboard_queries()
    document = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{index}", "expr": monitoring.as_promql(query.expr)}
                    for index, query in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump(document))
    checked = monitoring.run_promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_the_dashboard_covers_what_operators_look_at() -> None:
    board = monitoring.dashboard()
    assert board["uid"] and board["title"]
    panels = [panel for panel in monitoring.panels() if panel["type"] != "row"]
    assert len({panel["id"] for panel in monitoring.panels()}) == len(list(monitoring.panels()))
    used_by_panel = {}
    for panel in panels:
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        # One data source variable, so the JSON imports into any Grafana.
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        used_by_panel[panel["title"]] = set().union(*(monitoring.metric_names(t["expr"]) for t in panel["targets"]))
        assert used_by_panel[panel["title"]], f"panel {panel['title']!r} selects no metric"
    used = set().union(*used_by_panel.values())
    assert {
        "conveyor_push_to_ready_seconds_bucket",
        "conveyor_deployer_runs_total",
        "conveyor_trigger_webhook_requests_total",
        "conveyor_trigger_webhook_rejected_total",
        "conveyor_bus_consumer_pending",
        "conveyor_deployer_runs_active",
        "conveyor_deployer_runs_held",
    } <= used
    latency = " ".join(t["expr"] for p in panels if p["title"] == "Push → ready latency" for t in p["targets"])
    assert [float(q) for q in re.findall(r"histogram_quantile\(([\d.]+),", latency)] == [0.5, 0.9, 0.99]


def test_alerts_say_what_happened_and_how_bad_it_is() -> None:
    for rule in monitoring.rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_metric_names_are_read_from_promql_as_prometheus_would() -> None:
    expr = (
        'histogram_quantile(0.9, sum by (le, cluster) (rate(conveyor_a_bucket{cluster=~"$cluster"}[$__rate_interval])))'
        " / on (job) group_left (instance) up offset 5m and conveyor_b > bool 1e3"
        " unless sum(conveyor_c) without (consumer) or max_over_time(conveyor_d[10m:1m])"
    )
    assert monitoring.metric_names(expr) == {"conveyor_a_bucket", "up", "conveyor_b", "conveyor_c", "conveyor_d"}
    assert monitoring.label_matchers('x{state="FAILED", phase!~"q.*"} + y') == {"x": {"state", "phase"}}
    assert monitoring.grouping_labels(expr) == {"le", "cluster", "job", "instance", "consumer"}


def test_every_metric_they_use_is_defined_by_a_service() -> None:
    # The services' metric modules in one registry (the e2e test scrapes the real processes).
    assert conveyor_config.metrics and conveyor_trigger.metrics and conveyor_deployer.metrics
    exported = Exported.parse(generate_latest(REGISTRY).decode())
    queries = monitoring.rule_queries() + monitoring.dashboard_queries()
    missing = {
        f"{query.where}: {name}"
        for query in queries
        for name in monitoring.metric_names(query.expr)
        if name not in exported.names
    }
    assert not missing, f"metrics not defined by any service: {sorted(missing)}"

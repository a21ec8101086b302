"""`make run` serves every service's Prometheus /metrics on documented loopback ports and lists them."""

from __future__ import annotations

import pathlib
import socket

import pytest

from conveyor_launcher import plan, settings as launcher_settings
from conveyor_launcher.banner import banner
from conveyor_launcher.settings import LauncherSettings

DEFAULTS = {
    "CONVEYOR_CONFIG_METRICS_ADDR": "127.0.0.1:9101",
    "CONVEYOR_TRIGGER_METRICS_ADDR": "127.0.0.1:9102",
    "CONVEYOR_DEPLOYER_METRICS_ADDR": "127.0.0.1:9103",
}


def settings(tmp_path: pathlib.Path, **env: str) -> LauncherSettings:
    # A cluster of one's own (no sandbox): the plan is the three services and NATS.
    return LauncherSettings.read({"CONVEYOR_DATA_DIR": str(tmp_path / "data"), "CONVEYOR_SANDBOX": "off", **env})


def service_envs(s: LauncherSettings) -> dict[str, dict[str, str]]:
    built = plan.build(s, {"CONVEYOR_CLUSTERS_FILE": "/etc/clusters.yaml"}, token="t", kube=None, nats_port=4222)
    return {start.spec.name: start.spec.env for step in built.steps for start in step.start}


def test_metrics_are_on_by_default_on_documented_loopback_ports(tmp_path: pathlib.Path) -> None:
    envs = service_envs(settings(tmp_path))
    for service in plan.SERVICES:
        assert {variable: envs[service][variable] for variable in DEFAULTS} == DEFAULTS, service
    rows = [line.split("|") for line in (launcher_settings.__doc__ or "").splitlines() if line.startswith("| CONV")]
    documented = {cells[1].strip(): cells[2].strip() for cells in rows}
    assert {variable: documented.get(variable) for variable in DEFAULTS} == DEFAULTS


def test_a_metrics_address_of_the_user_wins(tmp_path: pathlib.Path) -> None:
    envs = service_envs(settings(tmp_path, CONVEYOR_DEPLOYER_METRICS_ADDR="0.0.0.0:9300"))
    assert envs["deployer"]["CONVEYOR_DEPLOYER_METRICS_ADDR"] == "0.0.0.0:9300"
    assert envs["deployer"]["CONVEYOR_CONFIG_METRICS_ADDR"] == "127.0.0.1:9101"


def test_the_banner_lists_every_metrics_url(tmp_path: pathlib.Path) -> None:
    s = settings(tmp_path, CONVEYOR_TRIGGER_METRICS_ADDR="0.0.0.0:9202")
    text = banner(s, nats_url="nats://127.0.0.1:4222", token="t", sandbox_kubeconfig=None, kube=None, conveyorctl="c")
    (line,) = [line for line in text.splitlines() if line.strip().startswith("metrics")]
    assert line.split() == [
        "metrics",
        "config",
        "http://127.0.0.1:9101/metrics",
        "trigger",
        "http://127.0.0.1:9202/metrics",
        "deployer",
        "http://127.0.0.1:9103/metrics",
    ]
    assert "deploy/monitoring/" in text


def test_a_taken_metrics_port_is_reported_with_its_variable(tmp_path: pathlib.Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = settings(tmp_path, CONVEYOR_CONFIG_METRICS_ADDR=f"127.0.0.1:{port}")
        with pytest.raises(
            plan.LaunchError, match=rf"config metrics 127\.0\.0\.1:{port} is in use \(set CONVEYOR_CONFIG_METRICS_ADDR"
        ):
            plan.check_ports(s)

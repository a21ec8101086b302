from __future__ import annotations

import pathlib
import socket

import pytest
import yaml

from conveyor_launcher import plan
from conveyor_launcher.settings import KubeContext, LauncherSettings


def settings(tmp_path: pathlib.Path, **env: str) -> LauncherSettings:
    return LauncherSettings.read({"CONVEYOR_DATA_DIR": str(tmp_path / "data"), **env})


def started(built: plan.Plan) -> list[list[str]]:
    return [[start.spec.name for start in step.start] for step in built.steps]


def test_sandbox_choice(tmp_path: pathlib.Path) -> None:
    kube = KubeContext(tmp_path / "config", "dev")
    auto = settings(tmp_path)
    assert plan.use_sandbox(auto, {}, None) is True
    assert plan.use_sandbox(auto, {}, kube) is False
    assert plan.use_sandbox(auto, {"CONVEYOR_CLUSTERS_FILE": "/etc/clusters.yaml"}, None) is False
    assert plan.use_sandbox(settings(tmp_path, CONVEYOR_SANDBOX="on"), {}, kube) is True
    assert plan.use_sandbox(settings(tmp_path, CONVEYOR_SANDBOX="off"), {}, None) is False


def test_clusters_file_registers_the_sandbox(tmp_path: pathlib.Path) -> None:
    document = yaml.safe_load(plan.sandbox_clusters_file(tmp_path / "kubeconfig"))
    assert document == {
        "clusters": [
            {
                "name": "sandbox",
                "platform": "KUBERNETES",
                "region": "local",
                "kubeconfig": str(tmp_path / "kubeconfig"),
                "context": "sandbox",
                "sandbox": True,
            }
        ]
    }


def test_taken_ports_are_reported_with_their_variable(tmp_path: pathlib.Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = settings(tmp_path, CONVEYOR_WEBHOOK_ADDR=f"127.0.0.1:{port}", CONVEYOR_NATS_PORT=str(port))
        with pytest.raises(plan.LaunchError, match=rf"webhooks 127\.0\.0\.1:{port} is in use \(set CONVEYOR_WEBHOOK"):
            plan.check_ports(s)
        with pytest.raises(plan.LaunchError, match="set CONVEYOR_NATS_PORT"):
            plan.choose_nats_port(s)


@pytest.mark.parametrize(
    ("listen", "connect"),
    [("0.0.0.0:1", "127.0.0.1:1"), ("[::]:2", "[::1]:2"), ("10.0.0.5:3", "10.0.0.5:3"), ("[::1]:4", "[::1]:4")],
)
def test_client_address(listen: str, connect: str) -> None:
    assert plan.client_address(listen) == connect


def test_nats_banner_is_filtered_but_warnings_show() -> None:
    assert not plan.nats_line_shown("[1] 2025/01/01 [INF]   Version:  2.15.1")
    assert plan.nats_line_shown("[1] 2025/01/01 [INF] Server is ready")
    assert plan.nats_line_shown("[1] 2025/01/01 [WRN] something odd")


# ---------------------------------------------------------------- build


def test_default_plan_starts_nats_then_the_sandbox_then_config_then_the_other_two(tmp_path: pathlib.Path) -> None:
    s = settings(tmp_path, CONVEYOR_WEBHOOK_ADDR="0.0.0.0:6002")
    built = plan.build(s, {"PATH": "/bin"}, token="t0ken", kube=None, nats_port=4222)
    assert started(built) == [["nats"], ["sandbox"], ["config"], ["trigger", "deployer"]]
    assert built.nats_url == "nats://127.0.0.1:4222" and built.sandbox_kubeconfig == s.data_dir / "sandbox-kubeconfig"

    nats_step, sandbox_step, config_step, _ = built.steps
    (nats,) = nats_step.start
    assert nats.ready == plan.PortOpen("127.0.0.1", 4222) and nats.spec.show is plan.nats_line_shown
    assert nats_step.mkdirs == (s.data_dir / "nats",) and nats_step.notes == ()
    assert nats.spec.argv[nats.spec.argv.index("--port") + 1] == "4222"
    assert "CONVEYOR_NATS_URL" not in nats.spec.env and nats.spec.env["PATH"] == "/bin"

    (sandbox,) = sandbox_step.start
    clusters_file = s.data_dir / "clusters.yaml"
    assert sandbox.ready == plan.FileExists(s.data_dir / "sandbox-kubeconfig")
    assert sandbox_step.unlink == (s.data_dir / "sandbox-kubeconfig",)
    assert sandbox_step.writes == ((clusters_file, plan.sandbox_clusters_file(s.data_dir / "sandbox-kubeconfig")),)
    assert sandbox.spec.argv[1:3] == ["-m", "conveyor_sandbox"]

    (config,) = config_step.start
    assert config.ready == plan.GrpcServing("127.0.0.1:50051")
    for start in (sandbox, config):
        assert start.spec.env["CONVEYOR_NATS_URL"] == "nats://127.0.0.1:4222"
        assert start.spec.env["CONVEYOR_CLUSTERS_FILE"] == str(clusters_file)
        assert start.spec.env["CONVEYOR_WEBHOOK_TOKEN"] == "t0ken"
        assert start.spec.env["CONVEYOR_WEBHOOK_ADDR"] == "0.0.0.0:6002"
        assert start.spec.env["CONVEYOR_LOG_FORMAT"] == "text"


def test_a_configured_nats_and_a_real_cluster_start_only_the_services(tmp_path: pathlib.Path) -> None:
    s = settings(tmp_path, CONVEYOR_NATS_URL="nats://nats.example:4222", CONVEYOR_DEPLOYER_ADDR="[::]:7003")
    kube = KubeContext(tmp_path / "config", "dev")
    built = plan.build(s, {}, token="t", kube=kube, nats_port=None)
    assert started(built) == [[], [], ["config"], ["trigger", "deployer"]]
    assert built.steps[0].notes == ("using NATS at nats://nats.example:4222 (CONVEYOR_NATS_URL)",)
    assert built.steps[1].notes == (f"deploying to your kubeconfig's current context 'dev' ({tmp_path / 'config'})",)
    assert built.sandbox_kubeconfig is None and built.nats_url == "nats://nats.example:4222"
    trigger, deployer = built.steps[3].start
    assert deployer.ready == plan.GrpcServing("[::1]:7003")
    assert trigger.spec.env["CONVEYOR_NATS_URL"] == "nats://nats.example:4222"
    assert "CONVEYOR_CLUSTERS_FILE" not in trigger.spec.env


def test_a_clusters_file_is_passed_through_without_a_note(tmp_path: pathlib.Path) -> None:
    environ = {"CONVEYOR_CLUSTERS_FILE": "/etc/clusters.yaml"}
    kube = KubeContext(tmp_path / "config", "dev")
    built = plan.build(settings(tmp_path), environ, token="t", kube=kube, nats_port=4222)
    assert started(built) == [["nats"], ["config"], ["trigger", "deployer"]]
    assert built.steps[1].start[0].spec.env["CONVEYOR_CLUSTERS_FILE"] == "/etc/clusters.yaml"


def test_a_moved_nats_port_is_noted_only_when_it_was_not_asked_for(tmp_path: pathlib.Path) -> None:
    moved = plan.build(settings(tmp_path), {}, token="t", kube=None, nats_port=4333)
    assert moved.steps[0].notes == ("port 4222 is taken: NATS uses port 4333",)
    asked = plan.build(settings(tmp_path, CONVEYOR_NATS_PORT="4333"), {}, token="t", kube=None, nats_port=4333)
    assert asked.steps[0].notes == () and asked.nats_url == "nats://127.0.0.1:4333"

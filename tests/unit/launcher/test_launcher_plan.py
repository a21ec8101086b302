from __future__ import annotations

import os
import pathlib
import socket

import pytest
import yaml

from conveyor.v1 import pipeline_pb2
from conveyor_launcher import plan
from conveyor_launcher.settings import KubeContext, LauncherSettings
from conveyor_sandbox import images, samples


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
    built = plan.build(s, {"PATH": "/bin"}, token="t0ken", kube=None, nats_port=4222, registry_port=5000)
    assert started(built) == [["nats"], [], ["registry", "sandbox"], ["config"], ["trigger", "deployer"]]
    assert built.nats_url == "nats://127.0.0.1:4222" and built.sandbox_kubeconfig == s.data_dir / "sandbox-kubeconfig"

    nats_step, _, sandbox_step, config_step, _ = built.steps
    (nats,) = nats_step.start
    assert nats.ready == plan.PortOpen("127.0.0.1", 4222) and nats.spec.show is plan.nats_line_shown
    assert nats_step.mkdirs == (s.data_dir / "nats",) and nats_step.notes == ()
    assert nats.spec.argv[nats.spec.argv.index("--port") + 1] == "4222"
    assert "CONVEYOR_NATS_URL" not in nats.spec.env and nats.spec.env["PATH"] == "/bin"

    _, sandbox = sandbox_step.start
    clusters_file = s.data_dir / "clusters.yaml"
    assert sandbox.ready == plan.FileExists(s.data_dir / "sandbox-kubeconfig")
    assert sandbox_step.unlink == (s.data_dir / "sandbox-kubeconfig",)
    assert sandbox_step.writes[0] == (clusters_file, plan.sandbox_clusters_file(s.data_dir / "sandbox-kubeconfig"))
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
    moved = plan.build(settings(tmp_path), {}, token="t", kube=None, nats_port=4333, registry_port=5000)
    assert moved.steps[0].notes == ("port 4222 is taken: NATS uses port 4333",)
    asked_for = settings(tmp_path, CONVEYOR_NATS_PORT="4333")
    asked = plan.build(asked_for, {}, token="t", kube=None, nats_port=4333, registry_port=5000)
    assert asked.steps[0].notes == () and asked.nats_url == "nats://127.0.0.1:4333"


# ---------------------------------------------------------------- the local registry and the demo pipeline


def sandbox_plan(tmp_path: pathlib.Path, **env: str) -> tuple[LauncherSettings, plan.Plan]:
    s = settings(tmp_path, CONVEYOR_WEBHOOK_ADDR="0.0.0.0:6002", **env)
    return s, plan.build(
        s,
        {"PATH": "/bin", "REGISTRY_HTTP_ADDR": "0.0.0.0:1"},
        token="t0ken",
        kube=None,
        nats_port=4222,
        registry_port=5123,
    )


def test_the_sandbox_comes_with_a_registry_seeded_first_and_notifying_the_trigger(tmp_path: pathlib.Path) -> None:
    s, built = sandbox_plan(tmp_path)
    data = s.data_dir
    assert built.registry == plan.DemoRegistry("127.0.0.1:5123", data / "registry" / "storage", data / "images")

    # Seeding happens before the registry starts on the same storage.
    seed_step, sandbox_step = built.steps[1], built.steps[2]
    assert seed_step.actions == (
        plan.SeedRegistry(
            layout=data / "images",
            storage=data / "registry" / "storage",
            workdir=data / "registry" / "seeding",
            repository="demo/web",
            tags=("v1.0.0", "v1.1.0", "v1.1.0-broken"),
        ),
    )
    registry, _ = sandbox_step.start
    config_path = data / "registry" / "config.yml"
    assert registry.ready == plan.PortOpen("127.0.0.1", 5123)
    assert registry.spec.argv[1:] == ["serve", str(config_path)]
    assert registry.spec.argv[0].endswith("docker-registry")
    # Distribution reads REGISTRY_* variables as config overrides: none may leak in.
    assert registry.spec.env == {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(data / "registry")}

    written = dict(sandbox_step.writes)
    config = yaml.safe_load(written[config_path])
    assert config["http"]["addr"] == "127.0.0.1:5123"
    assert config["storage"]["filesystem"]["rootdirectory"] == str(data / "registry" / "storage")
    (endpoint,) = config["notifications"]["endpoints"]
    assert endpoint["url"] == "http://127.0.0.1:6002/webhooks/distribution"
    assert endpoint["headers"] == {"Authorization": ["Bearer t0ken"]}
    assert endpoint["ignore"]["actions"] == ["pull"]
    # The same inputs give the same config (the upload secret is derived, not random).
    assert sandbox_plan(tmp_path)[1].steps[2].writes == sandbox_step.writes


def test_the_services_know_the_registry_and_the_sandbox_starts_on_its_image(tmp_path: pathlib.Path) -> None:
    s, built = sandbox_plan(tmp_path)
    _, sandbox = built.steps[2].start
    argv = sandbox.spec.argv
    assert argv[argv.index("--state") + 1] == str(s.data_dir / "sandbox-state.json")
    assert argv[argv.index("--web-image") + 1] == "127.0.0.1:5123/demo/web:v1.0.0"
    for start in (*built.steps[3].start, *built.steps[4].start):
        assert start.spec.env["CONVEYOR_REGISTRY_SANDBOX_HOST"] == "127.0.0.1:5123"
        assert start.spec.env["CONVEYOR_REGISTRY_SANDBOX_SCHEME"] == "http"
    from conveyor.registry import RegistrySettings

    registries = RegistrySettings.from_env(built.steps[3].start[0].spec.env)
    assert registries.for_host("127.0.0.1:5123").scheme == "http"


def test_the_demo_pipeline_is_ensured_once_every_service_is_ready(tmp_path: pathlib.Path) -> None:
    _, built = sandbox_plan(tmp_path, CONVEYOR_CONFIG_ADDR="0.0.0.0:6001")
    *_, last = built.steps
    assert [start.spec.name for start in last.start] == ["trigger", "deployer"]
    (ensure,) = last.actions
    assert ensure == plan.EnsurePipeline("127.0.0.1:6001", "web", plan.demo_pipeline("127.0.0.1:5123"))
    assert all(not step.actions for step in built.steps[2:-1])


def test_the_demo_pipeline_targets_the_sample_and_takes_the_demo_tags(tmp_path: pathlib.Path) -> None:
    from conveyor import tagfilter
    from conveyor_config.domain import pipelines as pipeline_rules

    pipeline = plan.demo_pipeline("127.0.0.1:5123")
    web = samples.web(image="127.0.0.1:5123/demo/web:v1.0.0")
    app = web["spec"]["template"]["spec"]["containers"][0]
    assert f"{pipeline.source.registry}/{pipeline.source.repository}" == app["image"].rsplit(":", 1)[0]
    assert (pipeline.target.cluster, pipeline.target.region) == ("sandbox", "local")
    assert pipeline.target.platform == pipeline_pb2.Target.KUBERNETES
    assert pipeline.target.namespace == web["metadata"]["namespace"]
    assert (pipeline.target.workload, pipeline.target.container) == (web["metadata"]["name"], app["name"])
    assert pipeline.target.workload_kind == pipeline_pb2.Target.DEPLOYMENT
    assert pipeline.options.rollback_on_failure
    for tag in (*images.DEMO_TAGS, "v1.3.0"):
        assert tagfilter.matches(pipeline.source.tag_filter, tag), tag
    assert not tagfilter.matches(pipeline.source.tag_filter, "latest")
    assert pipeline_rules.validate_pipeline(pipeline_rules.normalize_pipeline(pipeline)) == []


def test_without_the_sandbox_there_is_no_registry(tmp_path: pathlib.Path) -> None:
    kube = KubeContext(tmp_path / "config", "dev")
    built = plan.build(settings(tmp_path), {}, token="t", kube=kube, nats_port=4222)
    assert built.registry is None
    assert all(not step.actions for step in built.steps)
    assert all("CONVEYOR_REGISTRY_SANDBOX_HOST" not in start.spec.env for step in built.steps for start in step.start)


def test_registry_port_is_the_one_asked_for_else_the_one_kept_else_5000(tmp_path: pathlib.Path) -> None:
    s = settings(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 5000))
        holder.listen()
        # 5000 taken: a free port, which the data dir then keeps.
        first = plan.choose_registry_port(s)
        assert first != 5000
        plan.remember_registry_port(s.data_dir, first)
        assert plan.choose_registry_port(s) == first
        assert (s.data_dir / "registry" / "port").read_text() == f"{first}\n"
        with pytest.raises(plan.LaunchError, match="set CONVEYOR_SANDBOX_REGISTRY_PORT to another port"):
            plan.choose_registry_port(settings(tmp_path, CONVEYOR_SANDBOX_REGISTRY_PORT="5000"))
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", first))
        holder.listen()
        with pytest.raises(plan.LaunchError, match=rf"port {first} of the local registry is in use.*demo pipeline"):
            plan.choose_registry_port(s)
    asked = plan.choose_registry_port(settings(tmp_path, CONVEYOR_SANDBOX_REGISTRY_PORT=str(first)))
    assert asked == first


def test_registry_output_shows_that_it_listens_and_its_problems_only() -> None:
    assert plan.registry_line_shown('time="t" level=info msg="listening on 127.0.0.1:5000" go.version=go1.19')
    assert not plan.registry_line_shown('time="t" level=info msg="response completed" http.response.status=201')
    # A HEAD of a blob the registry lacks is how every push starts.
    assert not plan.registry_line_shown('level=error msg="response completed with error" http.response.status=404')
    assert plan.registry_line_shown('level=error msg="retryingsink: error writing events: connection refused"')
    assert plan.registry_line_shown('level=warning msg="httpSink encountered too many errors, backing off"')


def test_missing_registry_binaries_are_named_with_the_install_line(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # neither docker-registry nor skopeo there
    monkeypatch.setattr(plan.shutil, "which", lambda name, **_: None)
    with pytest.raises(plan.LaunchError, match=r"docker-registry and skopeo not found.*apt-get install -y docker"):
        plan.build(settings(tmp_path), {}, token="t", kube=None, nats_port=4222, registry_port=5000)

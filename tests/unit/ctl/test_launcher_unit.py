from __future__ import annotations

import io
import json
import pathlib
import shlex
import sys

import pytest
import yaml

from conveyor import launcher
from conveyor.ctl import main as ctl_main
from conveyor.ctl import spec
from conveyor.sandbox import samples
from conveyor.settings import SettingsError
from conveyor.v1 import pipeline_pb2


def settings(tmp_path: pathlib.Path, **env: str) -> launcher.LauncherSettings:
    return launcher.LauncherSettings.read({"CONVEYOR_DATA_DIR": str(tmp_path / "data"), **env})


def test_settings_defaults(tmp_path: pathlib.Path) -> None:
    s = settings(tmp_path)
    assert s.data_dir == (tmp_path / "data").absolute()
    assert (s.config_addr, s.trigger_addr, s.deployer_addr, s.webhook_addr) == (
        "127.0.0.1:50051",
        "127.0.0.1:50052",
        "127.0.0.1:50053",
        "127.0.0.1:8080",
    )
    assert s.nats_port is None and s.nats_url is None
    assert s.database_url == f"sqlite+aiosqlite:///{s.data_dir / 'conveyor.db'}"
    assert (s.sandbox, s.log_format, s.grace) == ("auto", "text", 15.0)


def test_settings_report_every_problem(tmp_path: pathlib.Path) -> None:
    with pytest.raises(SettingsError) as caught:
        settings(tmp_path, CONVEYOR_NATS_PORT="0", CONVEYOR_SANDBOX="maybe", CONVEYOR_CONFIG_ADDR="nope")
    message = str(caught.value)
    assert "CONVEYOR_NATS_PORT" in message and "CONVEYOR_SANDBOX" in message and "CONVEYOR_CONFIG_ADDR" in message


def write_kubeconfig(path: pathlib.Path, current: str | None, contexts: list[str]) -> pathlib.Path:
    document: dict[str, object] = {"contexts": [{"name": c, "context": {"cluster": c}} for c in contexts]}
    if current is not None:
        document["current-context"] = current
    path.write_text(yaml.safe_dump(document))
    return path


def test_kube_context_from_home_and_from_kubeconfig_lists(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".kube").mkdir()
    home_config = write_kubeconfig(tmp_path / ".kube" / "config", "dev", ["dev"])
    assert launcher.current_kube_context({}, home=tmp_path) == launcher.KubeContext(home_config, "dev")

    first = write_kubeconfig(tmp_path / "a.yaml", "prod", [])
    second = write_kubeconfig(tmp_path / "b.yaml", "other", ["prod"])
    listed = f"{tmp_path / 'missing.yaml'}:{first}:{second}"
    # The first file naming a current context wins; its definition may come from another file.
    assert launcher.current_kube_context({"KUBECONFIG": listed}, home=tmp_path) == launcher.KubeContext(second, "prod")


def test_no_kube_context(tmp_path: pathlib.Path) -> None:
    assert launcher.current_kube_context({}, home=tmp_path) is None
    empty = write_kubeconfig(tmp_path / "empty.yaml", None, ["a"])
    dangling = write_kubeconfig(tmp_path / "dangling.yaml", "gone", ["a"])
    (tmp_path / "broken.yaml").write_text("{not yaml")
    for path in (empty, dangling, tmp_path / "broken.yaml"):
        assert launcher.current_kube_context({"KUBECONFIG": str(path)}, home=tmp_path) is None


def test_sandbox_choice(tmp_path: pathlib.Path) -> None:
    kube = launcher.KubeContext(tmp_path / "config", "dev")
    auto = settings(tmp_path)
    assert launcher.use_sandbox(auto, {}, None) is True
    assert launcher.use_sandbox(auto, {}, kube) is False
    assert launcher.use_sandbox(auto, {"CONVEYOR_CLUSTERS_FILE": "/etc/clusters.yaml"}, None) is False
    assert launcher.use_sandbox(settings(tmp_path, CONVEYOR_SANDBOX="on"), {}, kube) is True
    assert launcher.use_sandbox(settings(tmp_path, CONVEYOR_SANDBOX="off"), {}, None) is False


def test_clusters_file_registers_the_sandbox(tmp_path: pathlib.Path) -> None:
    document = yaml.safe_load(launcher.sandbox_clusters_file(tmp_path / "kubeconfig"))
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


def test_webhook_token_is_created_once_private_and_reused(tmp_path: pathlib.Path) -> None:
    token = launcher.webhook_token(tmp_path)
    assert len(token) == 48 and (tmp_path / "webhook-token").stat().st_mode & 0o777 == 0o600
    assert launcher.webhook_token(tmp_path) == token


def test_one_launcher_per_data_dir(tmp_path: pathlib.Path) -> None:
    with (
        launcher.data_dir_lock(tmp_path / "data"),
        pytest.raises(launcher.LaunchError, match="already using"),
        launcher.data_dir_lock(tmp_path / "data"),
    ):
        pass
    with launcher.data_dir_lock(tmp_path / "data"):  # released
        pass


def test_taken_ports_are_reported_with_their_variable(tmp_path: pathlib.Path) -> None:
    import socket

    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        s = settings(tmp_path, CONVEYOR_WEBHOOK_ADDR=f"127.0.0.1:{port}", CONVEYOR_NATS_PORT=str(port))
        with pytest.raises(
            launcher.LaunchError, match=rf"webhooks 127\.0\.0\.1:{port} is in use \(set CONVEYOR_WEBHOOK"
        ):
            launcher.check_ports(s)
        with pytest.raises(launcher.LaunchError, match="set CONVEYOR_NATS_PORT"):
            launcher.choose_nats_port(s)


@pytest.mark.parametrize(
    ("listen", "connect"),
    [("0.0.0.0:1", "127.0.0.1:1"), ("[::]:2", "[::1]:2"), ("10.0.0.5:3", "10.0.0.5:3"), ("[::1]:4", "[::1]:4")],
)
def test_client_address(listen: str, connect: str) -> None:
    assert launcher.client_address(listen) == connect


def test_redact_url() -> None:
    assert launcher.redact_url("postgresql+asyncpg://u:secret@db/x") == "postgresql+asyncpg://u:***@db/x"
    assert launcher.redact_url("sqlite+aiosqlite:////d/c.db") == "sqlite+aiosqlite:////d/c.db"


def test_nats_banner_is_filtered_but_warnings_show() -> None:
    assert not launcher.nats_line_shown("[1] 2025/01/01 [INF]   Version:  2.15.1")
    assert launcher.nats_line_shown("[1] 2025/01/01 [INF] Server is ready")
    assert launcher.nats_line_shown("[1] 2025/01/01 [WRN] something odd")


def test_console_prefixes_and_colours_only_when_asked() -> None:
    plain, coloured = io.StringIO(), io.StringIO()
    launcher.Console(plain, colour=False).line("config", "hello")
    launcher.Console(coloured, colour=True).line("config", "hello")
    assert plain.getvalue() == "config   | hello\n"
    assert coloured.getvalue() == "\x1b[32mconfig   |\x1b[0m hello\n"


# ---------------------------------------------------------------- the banner's commands work


def banner_text(tmp_path: pathlib.Path) -> str:
    s = settings(tmp_path, CONVEYOR_CONFIG_ADDR="127.0.0.1:6001", CONVEYOR_WEBHOOK_ADDR="0.0.0.0:6002")
    return launcher.banner(
        s,
        nats_url="nats://127.0.0.1:4222",
        token="t0ken",
        sandbox_kubeconfig=s.data_dir / "sandbox-kubeconfig",
        kube=None,
        conveyorctl="conveyorctl",
    )


def test_banner_pipeline_command_targets_the_sandbox_sample(tmp_path: pathlib.Path) -> None:
    text = banner_text(tmp_path)
    assert text.splitlines()[1].startswith(launcher.READY_BANNER)
    assert "export CONVEYOR_CONFIG_ADDR=127.0.0.1:6001" in text
    assert "export CONVEYOR_TRIGGER_ADDR" not in text  # default: nothing to export
    (line,) = [line for line in text.splitlines() if "pipelines create" in line]
    args = ctl_main.build_parser().parse_args(shlex.split(line.strip())[1:])
    pipeline, _ = spec.pipeline_from_flags(args)

    web = samples.web()
    image = web["spec"]["template"]["spec"]["containers"][0]["image"]
    assert f"{pipeline.source.registry}/{pipeline.source.repository}" == image.rsplit(":", 1)[0]
    assert pipeline.target.cluster == "sandbox"
    assert pipeline.target.namespace == web["metadata"]["namespace"]
    assert pipeline.target.workload == web["metadata"]["name"]
    assert pipeline.target.workload_kind == pipeline_pb2.Target.DEPLOYMENT
    assert pipeline.target.container in {c["name"] for c in web["spec"]["template"]["spec"]["containers"]}


def test_banner_webhooks_are_valid_distribution_pushes_with_the_token(tmp_path: pathlib.Path) -> None:
    from conveyor_trigger.formats import distribution
    from conveyor_trigger.formats.base import WebhookRequest

    curls = [shlex.split(line.strip()) for line in banner_text(tmp_path).splitlines() if "curl" in line]
    assert len(curls) == 2
    pushes = []
    for argv in curls:
        assert "http://127.0.0.1:6002/webhooks/distribution" in argv
        assert argv[argv.index("-H") + 1] == "Authorization: Bearer t0ken"
        body = argv[argv.index("-d") + 1]
        (push,) = distribution.parse(json.loads(body), WebhookRequest(body=body.encode())).pushes
        pushes.append(push)
    assert [(p.registry, p.repository, p.tag) for p in pushes] == [
        ("registry.example.com", "demo/web", "v1.1.0"),
        ("registry.example.com", "demo/web", "v1.2.0-broken"),
    ]
    assert pushes[0].digest != pushes[1].digest and pushes[0].event_id != pushes[1].event_id
    tag_filter = spec.tag_filter("regex:^v\\d.*")
    import re2

    assert all(re2.fullmatch(tag_filter.value, p.tag) for p in pushes)


# ---------------------------------------------------------------- supervisor


def python_child(name: str, code: str) -> launcher.ChildSpec:
    return launcher.ChildSpec(name, [sys.executable, "-c", code], {"PYTHONUNBUFFERED": "1"})


async def test_wait_ready_fails_when_the_child_exits_and_shows_its_output() -> None:
    out = io.StringIO()
    supervisor = launcher.Supervisor(launcher.Console(out, colour=False), grace=1)
    child = await supervisor.start(python_child("config", "print('boom: bad settings'); raise SystemExit(2)"))

    async def never() -> bool:
        return False

    with pytest.raises(launcher.ChildExited) as caught:
        await supervisor.wait_ready(child, never, timeout=30)
    assert caught.value.code == 2
    assert list(child.tail) == ["boom: bad settings"]
    assert "config   | boom: bad settings" in out.getvalue()


async def test_wait_ready_times_out_and_stop_kills_a_stubborn_child() -> None:
    out = io.StringIO()
    supervisor = launcher.Supervisor(launcher.Console(out, colour=False), grace=0.5)
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up'); time.sleep(60)"
    child = await supervisor.start(python_child("trigger", stubborn))

    async def said_up() -> bool:
        return "up" in child.tail  # SIGTERM is ignored from here on

    async def never() -> bool:
        return False

    await supervisor.wait_ready(child, said_up, timeout=30)
    with pytest.raises(launcher.LaunchError, match=r"did not become ready within 0\.3s"):
        await supervisor.wait_ready(child, never, timeout=0.3)
    await supervisor.stop_all()
    assert child.process.returncode == -9
    assert "trigger did not stop in time: killing it" in out.getvalue()

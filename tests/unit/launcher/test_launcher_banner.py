from __future__ import annotations

import json
import pathlib
import shlex

import re2

from conveyor.v1 import pipeline_pb2
from conveyor_ctl import main as ctl_main, spec
from conveyor_launcher.banner import READY_BANNER, banner, redact_url
from conveyor_launcher.settings import LauncherSettings
from conveyor_sandbox import samples


def banner_text(tmp_path: pathlib.Path) -> str:
    s = LauncherSettings.read(
        {
            "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
            "CONVEYOR_CONFIG_ADDR": "127.0.0.1:6001",
            "CONVEYOR_WEBHOOK_ADDR": "0.0.0.0:6002",
        }
    )
    return banner(
        s,
        nats_url="nats://127.0.0.1:4222",
        token="t0ken",
        sandbox_kubeconfig=s.data_dir / "sandbox-kubeconfig",
        kube=None,
        conveyorctl="conveyorctl",
    )


def test_redact_url() -> None:
    assert redact_url("postgresql+asyncpg://u:secret@db/x") == "postgresql+asyncpg://u:***@db/x"
    assert redact_url("sqlite+aiosqlite:////d/c.db") == "sqlite+aiosqlite:////d/c.db"


def test_banner_pipeline_command_targets_the_sandbox_sample(tmp_path: pathlib.Path) -> None:
    text = banner_text(tmp_path)
    assert text.splitlines()[1].startswith(READY_BANNER)
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
    from conveyor_trigger.domain.formats import distribution
    from conveyor_trigger.domain.formats.base import WebhookRequest

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
    assert all(re2.fullmatch(tag_filter.value, p.tag) for p in pushes)

from __future__ import annotations

import json
import pathlib
import shlex

from conveyor_ctl import main as ctl_main
from conveyor_launcher import banner as banners, plan
from conveyor_launcher.banner import READY_BANNER, banner, redact_url
from conveyor_launcher.settings import KubeContext, LauncherSettings
from conveyor_sandbox import images

REGISTRY_HOST = "127.0.0.1:5123"


def banner_text(tmp_path: pathlib.Path, *, tags: frozenset[str] = frozenset(images.DEMO_SEEDED_TAGS)) -> str:
    s = LauncherSettings.read(
        {
            "CONVEYOR_DATA_DIR": str(tmp_path / "data"),
            "CONVEYOR_CONFIG_ADDR": "127.0.0.1:6001",
            "CONVEYOR_WEBHOOK_ADDR": "0.0.0.0:6002",
        }
    )
    built = plan.build(s, {}, token="t0ken", kube=None, nats_port=4222, registry_port=5123)
    assert built.registry is not None
    return banner(
        s,
        nats_url="nats://127.0.0.1:4222",
        token="t0ken",
        sandbox_kubeconfig=built.sandbox_kubeconfig,
        kube=None,
        conveyorctl="conveyorctl",
        registry=built.registry,
        registry_tags=tags,
    )


def command(text: str, marker: str) -> list[str]:
    (line,) = [line for line in text.splitlines() if marker in line]
    return shlex.split(line.strip())


def test_redact_url() -> None:
    assert redact_url("postgresql+asyncpg://u:secret@db/x") == "postgresql+asyncpg://u:***@db/x"
    assert redact_url("sqlite+aiosqlite:////d/c.db") == "sqlite+aiosqlite:////d/c.db"


def test_banner_pushes_a_new_demo_tag_with_skopeo(tmp_path: pathlib.Path) -> None:
    text = banner_text(tmp_path)
    assert text.splitlines()[1].startswith(READY_BANNER)
    assert "export CONVEYOR_CONFIG_ADDR=127.0.0.1:6001" in text
    assert "export CONVEYOR_TRIGGER_ADDR" not in text  # default: nothing to export
    assert "curl" not in text  # the registry's own notifications replace a hand-made webhook
    assert f"http://{REGISTRY_HOST}" in text and "demo/web tags: v1.0.0 v1.1.0 v1.1.0-broken" in text

    argv = command(text, "skopeo copy")
    assert argv[:3] == ["skopeo", "copy", "--dest-tls-verify=false"]
    transport, layout, ref = argv[3].split(":")
    assert (transport, layout) == ("oci", str(tmp_path / "data" / "images"))
    assert argv[4] == f"docker://{REGISTRY_HOST}/demo/web:v1.2.0"
    # The ref names an image of the layout the launcher writes.
    assert ref in images.build_demo_layout(tmp_path / "layout")

    # Once v1.2.0 was pushed, the banner proposes a tag that is still new.
    again = command(banner_text(tmp_path, tags=frozenset(images.DEMO_TAGS)), "skopeo copy")
    assert again[4] == f"docker://{REGISTRY_HOST}/demo/web:v1.3.0" and again[3].endswith(":v1.2.0")
    assert banners.next_tag(frozenset({*images.DEMO_TAGS, "v1.3.0"})) == "v1.4.0"


def test_banner_commands_parse_and_name_the_demo_pipeline(tmp_path: pathlib.Path) -> None:
    text = banner_text(tmp_path)
    parser = ctl_main.build_parser()
    tags = parser.parse_args(command(text, "pipelines tags")[1:])
    assert (tags.name, tags.digests) == ("web", True)
    starts = [shlex.split(line.strip()) for line in text.splitlines() if "pipelines start" in line]
    missing, broken = (parser.parse_args(argv[1:]) for argv in starts)
    assert missing.name == broken.name == "web"
    assert missing.tag not in images.DEMO_TAGS  # refused: the registry does not have it
    assert broken.tag == "v1.1.0-broken" and broken.follow
    watch = parser.parse_args(command(text, "runs list web")[1:])
    assert watch.pipeline == "web"
    assert plan.DEMO_TAG_FILTER in text


def test_banner_without_a_sandbox_posts_an_example_webhook_with_the_token(tmp_path: pathlib.Path) -> None:
    from conveyor_trigger.domain.formats import distribution
    from conveyor_trigger.domain.formats.base import WebhookRequest

    s = LauncherSettings.read({"CONVEYOR_DATA_DIR": str(tmp_path / "data"), "CONVEYOR_WEBHOOK_ADDR": "0.0.0.0:6002"})
    text = banner(
        s,
        nats_url="nats://127.0.0.1:4222",
        token="t0ken",
        sandbox_kubeconfig=None,
        kube=KubeContext(tmp_path / "config", "dev"),
        conveyorctl="conveyorctl",
    )
    assert "skopeo" not in text and "a REAL cluster" in text
    argv = command(text, "curl")
    assert "http://127.0.0.1:6002/webhooks/distribution" in argv
    assert argv[argv.index("-H") + 1] == "Authorization: Bearer t0ken"
    body = argv[argv.index("-d") + 1]
    (push,) = distribution.parse(json.loads(body), WebhookRequest(body=body.encode())).pushes
    assert (push.registry, push.repository, push.tag) == ("registry.example.com", "demo/web", "v1.1.0")

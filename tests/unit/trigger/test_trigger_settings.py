"""Trigger settings: defaults, validation that lists every problem, auth configuration, the README table."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

import conveyor_trigger
from conveyor.settings import SettingsError, markdown_rows, markdown_section, missing_rows
from conveyor_trigger.app import TriggerApp
from conveyor_trigger.settings import SHUTDOWN_PLAN, TriggerSettings

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_defaults() -> None:
    settings = TriggerSettings.from_env({})
    assert settings.grpc_address == "127.0.0.1:50052"
    assert settings.webhook_address == "127.0.0.1:8080"
    assert settings.config_address == "127.0.0.1:50051"
    assert settings.max_body == 1 << 20
    assert settings.matcher_enabled is True
    assert settings.resync_interval == 60.0
    assert settings.dedupe_window == 3600.0
    assert settings.shutdown_grace == 10.0
    assert not settings.authenticator.configured


def test_every_variable_named_in_the_trigger_is_declared() -> None:
    package = pathlib.Path(conveyor_trigger.__file__).parent
    named = {
        name
        for path in package.rglob("*.py")
        for name in re.findall(r"\b(CONVEYOR_[A-Z][A-Z_]*[A-Z])\b", path.read_text(encoding="utf-8"))
    }
    declared = [item.env for item in TriggerSettings.declarations()]
    assert named and named <= set(declared), sorted(named - set(declared))
    assert len(declared) == len(set(declared))


def test_the_readme_table_is_the_declarations() -> None:
    section = markdown_section((ROOT / "README.md").read_text(encoding="utf-8"), "### conveyor-trigger")
    declared = TriggerSettings.declarations()
    assert missing_rows(section, declared) == []
    # Nothing else either, and in the declared order: the table is `markdown_table(declarations())`.
    rows = [line.strip() for line in section.splitlines() if line.startswith("| `")]
    assert rows == markdown_rows(declared)


def test_secrets_are_never_quoted_in_problems() -> None:
    with pytest.raises(SettingsError) as error:
        TriggerSettings.from_env({"CONVEYOR_WEBHOOK_TOKEN": "tiny-secret", "CONVEYOR_PAGE_TOKEN_KEY": "k" * 31})
    message = str(error.value)
    assert "CONVEYOR_WEBHOOK_TOKEN=(secret): too short (at least 16 characters)" in message
    assert "CONVEYOR_PAGE_TOKEN_KEY=(secret)" in message and "at least 32" in message
    assert "tiny-secret" not in message and "k" * 31 not in message


def test_page_token_key_is_read() -> None:
    key = "k" * 32
    assert TriggerSettings.from_env({"CONVEYOR_PAGE_TOKEN_KEY": key}).page_token_key == key
    assert TriggerSettings.from_env({}).page_token_key is None


def test_the_shutdown_plan_fits_the_pod_and_the_grace_fits_the_plan() -> None:
    documents = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "trigger.yaml").read_text(encoding="utf-8"))
    [deployment] = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Deployment"]
    pod_grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert TriggerApp.shutdown_plan is SHUTDOWN_PLAN
    # 5 s for endpoint removal lag and slow nodes, as for every service (tests/unit/shared).
    assert SHUTDOWN_PLAN.final_deadline + 5 < pod_grace
    # In-flight webhooks, messages and RPCs get the default grace in full before the drain stage ends.
    default_grace = TriggerSettings.from_env({}).shutdown_grace
    assert default_grace < SHUTDOWN_PLAN.deadlines()["drain"] - SHUTDOWN_PLAN.deadlines()["not_serving"]


def test_values_are_read() -> None:
    settings = TriggerSettings.from_env(
        {
            "CONVEYOR_WEBHOOK_MAX_BODY": "512KiB",
            "CONVEYOR_WEBHOOK_TOKEN": "0123456789abcdef",
            "CONVEYOR_WEBHOOK_DEFAULT_REGISTRY": "Registry.Example.com",
            "CONVEYOR_TRIGGER_MATCHER_ENABLED": "false",
            "CONVEYOR_TRIGGER_RESYNC_INTERVAL": "500ms",
            "CONVEYOR_WEBHOOK_ADDR": "0.0.0.0:9000",
        }
    )
    assert settings.max_body == 512 * 1024
    assert settings.matcher_enabled is False
    assert settings.resync_interval == 0.5
    assert settings.webhook_address == "0.0.0.0:9000"
    (source,) = settings.authenticator.sources
    assert source.registry == "registry.example.com"


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        TriggerSettings.from_env(
            {
                "CONVEYOR_WEBHOOK_MAX_BODY": "lots",
                "CONVEYOR_WEBHOOK_TOKEN": "short",
                "CONVEYOR_TRIGGER_ADDR": "nowhere",
                "CONVEYOR_TRIGGER_EVENTS_LOG_SIZE": "0",
                "CONVEYOR_TRIGGER_DEDUPE_WINDOW": "soon",
                "CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED": "maybe",
            }
        )
    message = str(error.value)
    for name in (
        "CONVEYOR_WEBHOOK_MAX_BODY",
        "CONVEYOR_WEBHOOK_TOKEN",
        "CONVEYOR_TRIGGER_ADDR",
        "CONVEYOR_TRIGGER_EVENTS_LOG_SIZE",
        "CONVEYOR_TRIGGER_DEDUPE_WINDOW",
        "CONVEYOR_WEBHOOK_ALLOW_UNAUTHENTICATED",
    ):
        assert name in message


def test_sources_file_and_token_combine(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "sources.yaml"
    path.write_text("sources:\n  - name: hub\n    auth: query\n    token_env: HUB_TOKEN\n    formats: [dockerhub]\n")
    settings = TriggerSettings.from_env(
        {
            "CONVEYOR_WEBHOOK_SOURCES_FILE": str(path),
            "HUB_TOKEN": "hub-token-0123456789",
            "CONVEYOR_WEBHOOK_TOKEN": "0123456789abcdef",
        }
    )
    assert [s.name for s in settings.authenticator.sources] == ["shared-token", "hub"]
    path.write_text("sources:\n  - name: hub\n    auth: query\n")
    with pytest.raises(SettingsError, match="give exactly one of token"):
        TriggerSettings.from_env({"CONVEYOR_WEBHOOK_SOURCES_FILE": str(path)})

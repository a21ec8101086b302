"""Trigger settings: defaults, validation that lists every problem, auth configuration."""

from __future__ import annotations

import pathlib
import re

import pytest

from conveyor.settings import SettingsError
from conveyor_trigger import settings as settings_module
from conveyor_trigger.settings import TriggerSettings


def test_defaults() -> None:
    settings = TriggerSettings.from_env({})
    assert settings.grpc_address == "127.0.0.1:50052"
    assert settings.webhook_address == "127.0.0.1:8080"
    assert settings.config_address == "127.0.0.1:50051"
    assert settings.max_body == 1 << 20
    assert settings.matcher_enabled is True
    assert settings.resync_interval == 60.0
    assert settings.dedupe_window == 3600.0
    assert not settings.authenticator.configured


def test_every_variable_is_documented() -> None:
    doc = settings_module.__doc__ or ""
    source = pathlib.Path(settings_module.__file__).read_text()
    for name in set(re.findall(r'"(CONVEYOR_[A-Z_]+)"', source)):
        assert f"`{name}`" in doc, name


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

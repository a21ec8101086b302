"""conveyor-config settings: defaults, parsing, and every problem reported at once."""

from __future__ import annotations

import pathlib
import re

import pytest

from conveyor.settings import SettingsError
from conveyor_config import settings as settings_module
from conveyor_config.settings import ConfigSettings


def test_defaults() -> None:
    settings = ConfigSettings.from_env({})
    assert settings.address == "127.0.0.1:50051"
    assert settings.database_url == "sqlite+aiosqlite:///data/conveyor.db"
    assert settings.migrate_on_start is True
    assert settings.deployer_address is None
    assert settings.common.nats_url == "nats://127.0.0.1:4222"
    assert settings.outbox_interval == 1.0


def test_values_from_the_environment() -> None:
    settings = ConfigSettings.from_env(
        {
            "CONVEYOR_CONFIG_ADDR": "0.0.0.0:6000",
            "CONVEYOR_DATA_DIR": "/var/lib/conveyor",
            "CONVEYOR_CONFIG_MIGRATE": "false",
            "CONVEYOR_DEPLOYER_ADDR": "deployer:50053",
            "CONVEYOR_CONFIG_TARGET_CHECK_TIMEOUT": "500ms",
            "CONVEYOR_CONFIG_REQUEST_ID_RETENTION": "2h",
        }
    )
    assert settings.address == "0.0.0.0:6000"
    assert settings.database_url == "sqlite+aiosqlite:////var/lib/conveyor/conveyor.db"
    assert settings.migrate_on_start is False
    assert settings.deployer_address == "deployer:50053"
    assert settings.target_check_timeout == 0.5
    assert settings.request_id_retention == 7200


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://conveyor:s3cret@db:5432/conveyor", "postgresql+asyncpg://conveyor:s3cret@db:5432/conveyor"),
        ("sqlite:///tmp/c.db", "sqlite+aiosqlite:///tmp/c.db"),
        ("postgresql+asyncpg://u@h/d", "postgresql+asyncpg://u@h/d"),
    ],
)
def test_database_urls_pick_the_async_drivers(given: str, expected: str) -> None:
    assert ConfigSettings.from_env({"CONVEYOR_DATABASE_URL": given}).database_url == expected


def test_every_problem_is_reported_without_leaking_the_password() -> None:
    with pytest.raises(SettingsError) as error:
        ConfigSettings.from_env(
            {
                "CONVEYOR_CONFIG_ADDR": "nowhere",
                "CONVEYOR_DATABASE_URL": "mysql://root:hunter2@db/x",
                "CONVEYOR_CONFIG_MIGRATE": "perhaps",
                "CONVEYOR_CONFIG_OUTBOX_INTERVAL": "soon",
                "CONVEYOR_DEPLOYER_ADDR": "no-port",
            }
        )
    message = str(error.value)
    for name in (
        "CONVEYOR_CONFIG_ADDR",
        "CONVEYOR_DATABASE_URL",
        "CONVEYOR_CONFIG_MIGRATE",
        "CONVEYOR_CONFIG_OUTBOX_INTERVAL",
        "CONVEYOR_DEPLOYER_ADDR",
    ):
        assert name in message
    assert "hunter2" not in message


def test_the_docstring_documents_every_variable_read() -> None:
    source = pathlib.Path(settings_module.__file__).read_text(encoding="utf-8")
    table = settings_module.__doc__ or ""
    read = set(re.findall(r'"(CONVEYOR_[A-Z_]+)"', source))
    read |= {"CONVEYOR_NATS_URL", "CONVEYOR_LOG_LEVEL", "CONVEYOR_LOG_FORMAT", "CONVEYOR_CONFIG_METRICS_ADDR"}
    read.add("CONVEYOR_DATA_DIR")
    documented = set(re.findall(r"`(CONVEYOR_[A-Z_]+)`", table))
    assert read == documented

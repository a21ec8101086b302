"""conveyor-config settings: defaults, parsing, and every problem reported at once."""

from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from conveyor.settings import SettingsError, markdown_rows, markdown_section, missing_rows
from conveyor_config import settings as settings_module
from conveyor_config.app import ConfigApp
from conveyor_config.settings import SHUTDOWN_PLAN, ConfigSettings

ROOT = pathlib.Path(__file__).resolve().parents[3]


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


def test_every_variable_read_is_declared() -> None:
    source = pathlib.Path(settings_module.__file__).read_text(encoding="utf-8")
    read = set(re.findall(r'"(CONVEYOR_[A-Z_]+)"', source))
    read |= {"CONVEYOR_NATS_URL", "CONVEYOR_LOG_LEVEL", "CONVEYOR_LOG_FORMAT", "CONVEYOR_CONFIG_METRICS_ADDR"}
    read |= {"CONVEYOR_DATA_DIR", "CONVEYOR_PAGE_TOKEN_KEY"}
    read |= {"CONVEYOR_TRACING", "CONVEYOR_OTLP_ENDPOINT", "CONVEYOR_TRACING_FILE", "CONVEYOR_BUS_MAX_DELIVER"}
    read.add("CONVEYOR_BUS_REPLICAS")
    declared = [item.env for item in ConfigSettings.declarations()]
    assert sorted(declared) == sorted(read)
    assert len(declared) == len(set(declared))


def test_the_readme_table_is_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = markdown_section(readme, "### conveyor-config")
    declared = ConfigSettings.declarations()
    assert missing_rows(section, declared) == []
    # Nothing else either, and in the declared order: the table is `markdown_table(declarations())`.
    rows = [line.strip() for line in section.splitlines() if line.startswith("| `CONVEYOR_")]
    assert rows == markdown_rows(declared)


def test_secrets_are_never_quoted_in_problems() -> None:
    with pytest.raises(SettingsError) as error:
        ConfigSettings.from_env(
            {"CONVEYOR_PAGE_TOKEN_KEY": "too-short-secret", "CONVEYOR_DATABASE_URL": "oracle://u:pw-9f2@db/x"}
        )
    message = str(error.value)
    assert "CONVEYOR_PAGE_TOKEN_KEY" in message and "at least 32" in message
    assert "unsupported database 'oracle'" in message
    assert "too-short-secret" not in message and "pw-9f2" not in message


def test_page_token_key_and_shutdown_grace() -> None:
    key = "k" * 32
    settings = ConfigSettings.from_env({"CONVEYOR_PAGE_TOKEN_KEY": f"{key},{'o' * 40}"})
    assert settings.page_token_key == f"{key},{'o' * 40}"
    assert ConfigSettings.from_env({}).page_token_key is None
    assert ConfigSettings.from_env({"CONVEYOR_CONFIG_SHUTDOWN_GRACE": "3s"}).shutdown_grace == 3.0


def test_the_shutdown_plan_fits_the_pod_and_the_grace_fits_the_plan() -> None:
    documents = yaml.safe_load_all((ROOT / "deploy" / "kubernetes" / "config.yaml").read_text(encoding="utf-8"))
    [deployment] = [d for d in documents if isinstance(d, dict) and d.get("kind") == "Deployment"]
    pod_grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert ConfigApp.shutdown_plan is SHUTDOWN_PLAN
    # 5 s for endpoint removal lag and slow nodes, as for every service (tests/unit/shared).
    assert SHUTDOWN_PLAN.final_deadline + 5 < pod_grace
    # In-flight RPCs get the default grace in full before the drain stage ends.
    default_grace = ConfigSettings.from_env({}).shutdown_grace
    assert default_grace < SHUTDOWN_PLAN.deadlines()["drain"] - SHUTDOWN_PLAN.deadlines()["not_serving"]

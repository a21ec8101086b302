"""docker-compose.yml: valid by the compose specification, and wired the way the code reads it."""

from __future__ import annotations

from typing import Any

import compose_spec
import pytest
import yaml

from conveyor.settings import parse_address
from tests.unit.artifacts.artifacts_support import (
    ROOT,
    SERVICES,
    InterpolationError,
    command_problem,
    env_names_read,
    interpolate,
    interpolation_variables,
    service_of_command,
)

COMPOSE_FILE = ROOT / "docker-compose.yml"
# What a user puts in .env (see the file's header).
USER_ENV = {"CONVEYOR_WEBHOOK_TOKEN": "0123456789abcdef0123", "HOME": "/home/user"}


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The file as Compose sees it: interpolated, then parsed and validated by the spec."""
    parsed = compose_spec.PyCompose.from_yaml(interpolate(compose_text(), USER_ENV))
    parsed.validate()
    return parsed.to_dict()


def conveyor_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for service in compose["services"].values():
        which = service_of_command(list(service.get("command") or []))
        if which:
            found[which] = service
    return found


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def test_the_file_is_valid_by_the_compose_spec(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"nats", "postgres", "config", "trigger", "deployer"}


def test_the_validator_is_not_lenient() -> None:
    """The spec validator rejects what Compose rejects, so the test above means something."""
    broken = interpolate(compose_text(), USER_ENV).replace("    restart: unless-stopped", "    restart: sometimes", 1)
    with pytest.raises(ValueError):
        compose_spec.PyCompose.from_yaml(broken)
    unknown_key = interpolate(compose_text(), USER_ENV).replace("    healthcheck:", "    healthchek:", 1)
    with pytest.raises(ValueError):
        compose_spec.PyCompose.from_yaml(unknown_key)


def test_the_webhook_token_is_required_and_everything_else_has_a_default() -> None:
    with pytest.raises(InterpolationError, match="CONVEYOR_WEBHOOK_TOKEN"):
        interpolate(compose_text(), {"HOME": "/home/user"})
    assert interpolation_variables(compose_text()) == {
        "CONVEYOR_WEBHOOK_TOKEN",
        "POSTGRES_PASSWORD",
        "HOST_KUBECONFIG",
        "HOME",
        "DEPLOYER_USER",
    }


def test_every_service_runs_a_command_the_image_has(compose: dict[str, Any]) -> None:
    assert set(conveyor_services(compose)) == set(SERVICES)
    for name, service in conveyor_services(compose).items():
        assert command_problem(list(service["command"])) is None, name
        test = list(service["healthcheck"]["test"])
        assert test[0] == "CMD" and command_problem(test[1:]) is None, name


def test_every_conveyor_variable_is_one_the_service_reads(compose: dict[str, Any]) -> None:
    unknown = []
    for service, definition in conveyor_services(compose).items():
        names = env_names_read(service)
        unknown += [
            f"{service}: {name}"
            for name in environment(definition)
            if name.startswith("CONVEYOR_") and not names.reads(name, service)
        ]
    assert unknown == []


def test_the_env_name_check_catches_a_wrong_name() -> None:
    assert env_names_read("trigger").reads("CONVEYOR_WEBHOOK_TOKEN", "trigger")
    assert not env_names_read("config").reads("CONVEYOR_WEBHOOK_TOKEN", "config")
    assert not env_names_read("config").reads("CONVEYOR_TRIGGER_METRICS_ADDR", "config")
    assert env_names_read("config").reads("CONVEYOR_CONFIG_METRICS_ADDR", "config")
    assert not env_names_read("deployer").reads("CONVEYOR_DEPLOYER_ADRR", "deployer")


def test_services_listen_where_the_others_and_the_health_checks_look(compose: dict[str, Any]) -> None:
    services = conveyor_services(compose)
    names = {
        which: name for name, s in compose["services"].items() if (which := service_of_command(s.get("command") or []))
    }
    listen = {}
    for service, definition in services.items():
        env = environment(definition)
        host, port = parse_address(env[f"CONVEYOR_{service.upper()}_ADDR"])
        assert host == "0.0.0.0", f"{service} must listen on all interfaces inside its container"
        listen[service] = port
        assert definition["healthcheck"]["test"][-1] == f"127.0.0.1:{port}"
        assert any(str(p).endswith(f":{port}:{port}") for p in definition.get("ports", [])), service
    # Clients reach each service by its compose name and port.
    assert environment(services["trigger"])["CONVEYOR_CONFIG_ADDR"] == f"{names['config']}:{listen['config']}"
    assert environment(services["config"])["CONVEYOR_DEPLOYER_ADDR"] == f"{names['deployer']}:{listen['deployer']}"
    webhook_port = parse_address(environment(services["trigger"])["CONVEYOR_WEBHOOK_ADDR"])[1]
    assert f"{webhook_port}:{webhook_port}" in services["trigger"]["ports"]


def test_infrastructure_is_persistent_and_healthy_before_the_services_start(compose: dict[str, Any]) -> None:
    assert "--jetstream" in compose["services"]["nats"]["command"]
    volumes = set(compose["volumes"])
    for infra, path in (("nats", "/data"), ("postgres", "/var/lib/postgresql/data")):
        mounts = compose["services"][infra]["volumes"]
        assert any(str(m).split(":")[0] in volumes and str(m).endswith(path) for m in mounts), infra
        assert compose["services"][infra]["healthcheck"]["test"]
    services = conveyor_services(compose)
    for service, definition in services.items():
        depends = definition["depends_on"]
        assert depends["nats"]["condition"] == "service_healthy", service
        for dependency in depends:
            assert dependency in compose["services"]
        env = environment(definition)
        assert env["CONVEYOR_NATS_URL"] == "nats://nats:4222"
    assert services["config"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert environment(services["config"])["CONVEYOR_DATABASE_URL"].startswith("postgresql+asyncpg://conveyor:")


def test_the_deployer_gets_a_read_only_kubeconfig(compose: dict[str, Any]) -> None:
    deployer = conveyor_services(compose)["deployer"]
    env = environment(deployer)
    (mount,) = [str(v) for v in deployer["volumes"]]
    source, target, mode = mount.rsplit(":", 2)
    assert source == "/home/user/.kube/config" and mode == "ro"
    assert env["KUBECONFIG"] == target


def test_the_raw_file_is_plain_yaml() -> None:
    # Compose reads it as YAML first; keep it free of tricks a reader would not expect.
    document = yaml.safe_load(compose_text())
    assert document["name"] == "conveyor"

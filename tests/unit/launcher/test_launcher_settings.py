from __future__ import annotations

import pathlib

import pytest
import yaml

from conveyor.settings import SettingsError
from conveyor_launcher.settings import KubeContext, LauncherSettings, current_kube_context, webhook_token


def settings(tmp_path: pathlib.Path, **env: str) -> LauncherSettings:
    return LauncherSettings.read({"CONVEYOR_DATA_DIR": str(tmp_path / "data"), **env})


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
    assert current_kube_context({}, home=tmp_path) == KubeContext(home_config, "dev")

    first = write_kubeconfig(tmp_path / "a.yaml", "prod", [])
    second = write_kubeconfig(tmp_path / "b.yaml", "other", ["prod"])
    listed = f"{tmp_path / 'missing.yaml'}:{first}:{second}"
    # The first file naming a current context wins; its definition may come from another file.
    assert current_kube_context({"KUBECONFIG": listed}, home=tmp_path) == KubeContext(second, "prod")


def test_no_kube_context(tmp_path: pathlib.Path) -> None:
    assert current_kube_context({}, home=tmp_path) is None
    empty = write_kubeconfig(tmp_path / "empty.yaml", None, ["a"])
    dangling = write_kubeconfig(tmp_path / "dangling.yaml", "gone", ["a"])
    (tmp_path / "broken.yaml").write_text("{not yaml")
    for path in (empty, dangling, tmp_path / "broken.yaml"):
        assert current_kube_context({"KUBECONFIG": str(path)}, home=tmp_path) is None


def test_webhook_token_is_created_once_private_and_reused(tmp_path: pathlib.Path) -> None:
    token = webhook_token(tmp_path)
    assert len(token) == 48 and (tmp_path / "webhook-token").stat().st_mode & 0o777 == 0o600
    assert webhook_token(tmp_path) == token

"""CONVEYOR_BUS_REPLICAS: one shared setting, 1 by default, 1-5."""

from __future__ import annotations

import pytest

from conveyor.settings import BUS_REPLICAS, CommonSettings, EnvReader, SettingsError


def test_bus_replicas_is_a_common_setting_from_one_to_five() -> None:
    assert CommonSettings.read(EnvReader({}), service="trigger").bus_replicas == 1
    assert CommonSettings.read(EnvReader({"CONVEYOR_BUS_REPLICAS": "3"}), service="trigger").bus_replicas == 3
    for service in ("config", "trigger", "deployer"):
        assert BUS_REPLICAS in CommonSettings.declarations(service)
    assert not BUS_REPLICAS.secret
    for wrong in ("0", "6", "three"):
        reader = EnvReader({"CONVEYOR_BUS_REPLICAS": wrong})
        CommonSettings.read(reader, service="deployer")
        with pytest.raises(SettingsError, match=f"CONVEYOR_BUS_REPLICAS='{wrong}'"):
            reader.check()

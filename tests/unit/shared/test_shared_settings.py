from __future__ import annotations

import pytest

from conveyor.settings import CommonSettings, EnvReader, SettingsError, parse_address, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("2.5", 2.5), (" 10s ", 10.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "-1s", "5 parsecs"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert parse_address("[::1]:0") == ("::1", 0)
    for bad in ("localhost", ":80", "host:http", "host:70000"):
        with pytest.raises(ValueError):
            parse_address(bad)


def test_reader_collects_every_problem_before_failing() -> None:
    reader = EnvReader({"A_INT": "many", "A_BOOL": "perhaps", "A_DUR": "soon", "A_ADDR": "nowhere", "A_CHOICE": "loud"})
    assert reader.int("A_INT", 3) == 3
    assert reader.bool("A_BOOL", True) is True
    assert reader.duration("A_DUR", 1.0) == 1.0
    assert reader.address("A_ADDR", "127.0.0.1:1") == "127.0.0.1:1"
    assert reader.choice("A_CHOICE", "info", ("info", "debug")) == "info"
    with pytest.raises(SettingsError) as error:
        reader.check()
    message = str(error.value)
    for name in ("A_INT", "A_BOOL", "A_DUR", "A_ADDR", "A_CHOICE"):
        assert name in message


def test_reader_bounds_and_blank_values() -> None:
    reader = EnvReader({"N": "0", "BLANK": "   ", "FLAG": "off"})
    reader.int("N", 5, minimum=1, maximum=10)
    assert reader.str("BLANK", "default") == "default"
    assert reader.bool("FLAG", True) is False
    with pytest.raises(SettingsError, match="N=0"):
        reader.check()


def test_common_settings_defaults_and_metrics_address() -> None:
    reader = EnvReader({"CONVEYOR_CONFIG_METRICS_ADDR": "127.0.0.1:9101", "CONVEYOR_LOG_FORMAT": "TEXT"})
    settings = CommonSettings.read(reader, service="config")
    reader.check()
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.metrics_address == "127.0.0.1:9101"
    assert settings.log_format == "text"
    bad = EnvReader({"CONVEYOR_TRIGGER_METRICS_ADDR": "9102"})
    CommonSettings.read(bad, service="trigger")
    with pytest.raises(SettingsError, match="CONVEYOR_TRIGGER_METRICS_ADDR"):
        bad.check()

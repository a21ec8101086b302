"""Settings declared once per field: reading, every problem at once, README rows from the declarations."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

import pytest

from conveyor import settings as s
from conveyor.settings import CommonSettings, EnvReader, SettingsError

ROOT = pathlib.Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Example:
    common: CommonSettings
    address: str = s.setting("CONVEYOR_EX_ADDR", "127.0.0.1:50060", parse=s.address(), doc="gRPC listen address")
    workers: int = s.setting(
        "CONVEYOR_EX_WORKERS", 8, parse=s.integer(minimum=1, maximum=64), doc="parallel workers (1-64)"
    )
    grace: float = s.setting("CONVEYOR_EX_GRACE", 0.5, parse=s.duration(minimum=0.1), doc="grace period")
    enabled: bool = s.setting("CONVEYOR_EX_ENABLED", True, parse=s.boolean(), doc="`false` turns it off")
    mode: str = s.setting("CONVEYOR_EX_MODE", "fast", parse=s.choice("fast", "safe"), doc="`fast` or `safe`")
    file: pathlib.Path | None = s.setting("CONVEYOR_EX_FILE", None, parse=s.path(), doc="optional YAML file")
    url: str = s.setting("CONVEYOR_EX_URL", "", parse=s.text(), doc="database URL", shown="sqlite:///<data dir>/ex.db")


def _read(environ: dict[str, str]) -> Example:
    reader = EnvReader(environ)
    return s.read_settings(Example, environ, common=CommonSettings.read(reader, service="ex"))


def test_declared_settings_read_defaults_and_values() -> None:
    assert _read({}).workers == 8
    settings = _read(
        {
            "CONVEYOR_EX_ADDR": " 0.0.0.0:9000 ",
            "CONVEYOR_EX_WORKERS": "16",
            "CONVEYOR_EX_GRACE": "2m",
            "CONVEYOR_EX_ENABLED": "off",
            "CONVEYOR_EX_MODE": "SAFE",
            "CONVEYOR_EX_FILE": "~/ex.yaml",
            "CONVEYOR_EX_URL": "   ",  # blank is unset
        }
    )
    assert settings.address == "0.0.0.0:9000"
    assert settings.workers == 16
    assert settings.grace == 120.0
    assert settings.enabled is False
    assert settings.mode == "safe"
    assert settings.file == pathlib.Path("~/ex.yaml").expanduser()
    assert settings.url == ""


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as error:
        _read(
            {
                "CONVEYOR_EX_ADDR": "nowhere",
                "CONVEYOR_EX_WORKERS": "100",
                "CONVEYOR_EX_GRACE": "50ms",
                "CONVEYOR_EX_ENABLED": "perhaps",
                "CONVEYOR_EX_MODE": "reckless",
            }
        )
    message = str(error.value)
    assert message.startswith("invalid settings:\n  ")
    for expected in (
        "CONVEYOR_EX_ADDR='nowhere': expected HOST:PORT",
        "CONVEYOR_EX_WORKERS='100': must be between 1 and 64",
        "CONVEYOR_EX_GRACE='50ms': must be at least 0.1s",
        "CONVEYOR_EX_ENABLED='perhaps': expected true or false",
        "CONVEYOR_EX_MODE='reckless': expected one of fast, safe",
    ):
        assert expected in message


def test_problems_can_join_an_env_readers_list() -> None:
    reader = EnvReader({"CONVEYOR_EX_WORKERS": "many", "CONVEYOR_OTHER": "x"})
    reader.int("CONVEYOR_OTHER", 1)
    common = CommonSettings.read(reader, service="ex")
    settings = s.read_settings(Example, reader.environ, problems=reader.problems, common=common)
    assert settings.workers == 8  # the default, the problem recorded
    with pytest.raises(SettingsError) as error:
        reader.check()
    assert "CONVEYOR_OTHER" in str(error.value) and "CONVEYOR_EX_WORKERS='many': not an integer" in str(error.value)


def test_given_values_override_declarations() -> None:
    common = CommonSettings.read(EnvReader({}), service="ex")
    settings = s.read_settings(Example, {"CONVEYOR_EX_WORKERS": "nonsense"}, common=common, workers=3)
    assert settings.workers == 3


def test_one_sided_integer_bounds_read_naturally() -> None:
    with pytest.raises(ValueError, match="must be at least 1"):
        s.integer(minimum=1)("0")
    with pytest.raises(ValueError, match="must be at most 9"):
        s.integer(maximum=9)("10")


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.5, "500ms"), (2.0, "2s"), (600.0, "10m"), (86400.0, "24h"), (90.0, "90s"), (0.0, "0s")]
)
def test_durations_format_back_to_what_parse_duration_reads(seconds: float, text: str) -> None:
    assert s.format_duration(seconds) == text
    assert s.parse_duration(text) == pytest.approx(seconds)


def test_readme_rows_come_from_the_declarations() -> None:
    rows = s.markdown_rows(s.declarations(Example))
    assert rows == [
        "| `CONVEYOR_EX_ADDR` | `127.0.0.1:50060` | gRPC listen address |",
        "| `CONVEYOR_EX_WORKERS` | `8` | parallel workers (1-64) |",
        "| `CONVEYOR_EX_GRACE` | `500ms` | grace period |",
        "| `CONVEYOR_EX_ENABLED` | `true` | `false` turns it off |",
        "| `CONVEYOR_EX_MODE` | `fast` | `fast` or `safe` |",
        "| `CONVEYOR_EX_FILE` | unset | optional YAML file |",
        "| `CONVEYOR_EX_URL` | `sqlite:///<data dir>/ex.db` | database URL |",
    ]
    table = s.markdown_table(s.declarations(Example)).splitlines()
    assert table[:2] == ["| Variable | Default | Meaning |", "|---|---|---|"]


def test_missing_rows_finds_absent_and_changed_documentation() -> None:
    declared = s.declarations(Example)
    document = "\n".join(s.markdown_rows(declared))
    assert s.missing_rows(document, declared) == []
    edited = document.replace("| `8` |", "| `4` |").replace("| `CONVEYOR_EX_MODE` |", "| `CONVEYOR_EX_MOOD` |")
    assert s.missing_rows(edited, declared) == [
        "| `CONVEYOR_EX_WORKERS` | `8` | parallel workers (1-64) |",
        "| `CONVEYOR_EX_MODE` | `fast` | `fast` or `safe` |",
    ]


def test_markdown_section_stops_at_the_next_heading_of_its_level() -> None:
    document = "## Configuration\nintro\n### a\nrow a\n#### detail\nmore a\n### b\nrow b\n## Next\nx"
    assert s.markdown_section(document, "### a") == "row a\n#### detail\nmore a"
    assert s.markdown_section(document, "### b") == "row b"
    with pytest.raises(ValueError):
        s.markdown_section(document, "### c")


@pytest.mark.parametrize(
    ("heading", "service", "metrics_doc"),
    [
        ("### conveyor-config", "config", s.DEFAULT_METRICS_DOC),
        (
            "### conveyor-trigger",
            "trigger",
            "extra HOST:PORT serving only `/metrics` (the webhook listener serves it too)",
        ),
        ("### conveyor-deployer", "deployer", "`HOST:PORT` for Prometheus `/metrics`; unset: none"),
    ],
)
def test_the_readme_documents_the_common_settings_as_declared(heading: str, service: str, metrics_doc: str) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = s.markdown_section(readme, heading)
    assert s.missing_rows(section, CommonSettings.declarations(service, metrics_doc=metrics_doc)) == []


def test_the_readme_documents_the_data_dir_as_declared() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert s.missing_rows(s.markdown_section(readme, "### conveyor-config"), [s.DATA_DIR]) == []


def test_common_settings_read_through_declarations_keep_their_messages() -> None:
    reader = EnvReader(
        {"CONVEYOR_LOG_LEVEL": "LOUD", "CONVEYOR_CONFIG_METRICS_ADDR": "9101", "CONVEYOR_DATA_DIR": "/x"}
    )
    common = CommonSettings.read(reader, service="config")
    assert (common.log_level, common.metrics_address) == ("info", None)
    assert s.data_dir(reader) == pathlib.Path("/x")
    assert reader.problems == [
        "CONVEYOR_CONFIG_METRICS_ADDR='9101': expected HOST:PORT",
        "CONVEYOR_LOG_LEVEL='LOUD': expected one of debug, info, warning, error",
    ]

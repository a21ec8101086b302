"""Reading settings from the environment: once, at start-up, validated, failing fast.

Each service declares a frozen dataclass and builds it with an `EnvReader`, which
collects every problem before raising one `SettingsError` that lists them all.

Declared once per field (the form services move to): each dataclass field names its variable,
default, parser and README text, and `read_settings` reads them all, reporting every problem::

    @dataclass(frozen=True)
    class DeployerSettings:
        common: CommonSettings
        address: str = setting("CONVEYOR_DEPLOYER_ADDR", "127.0.0.1:50053", parse=address(),
                               doc="gRPC listen address (TargetService, health, reflection)")

    settings = read_settings(DeployerSettings, environ, common=CommonSettings.read(reader, service="deployer"))

`markdown_rows(declarations(DeployerSettings))` renders the README table rows (variable, default,
meaning) and `missing_rows(readme_section, ...)` lists those the README lacks or has changed.
"""

from __future__ import annotations

import builtins
import dataclasses
import os
import pathlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from conveyor.subjects import DEFAULT_MAX_DELIVER

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T")
S = TypeVar("S", bound="DataclassInstance")


class SettingsError(ValueError):
    """The environment holds invalid settings; the message lists each one."""


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """`500ms`, `30s`, `5m`, `1h` or a bare number of seconds -> seconds."""
    value = text.strip().lower()
    for unit in sorted(_DURATION_UNITS, key=len, reverse=True):
        if value.endswith(unit):
            number = float(value[: -len(unit)])
            break
    else:
        unit, number = "s", float(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number * _DURATION_UNITS[unit]


def format_duration(seconds: float) -> str:
    """The shortest of `1h`, `10m`, `30s`, `500ms` that is exact; inverse of `parse_duration`."""
    for unit in ("h", "m", "s", "ms"):
        count = seconds / _DURATION_UNITS[unit]
        if count >= 1 and abs(count - round(count)) < 1e-9:
            return f"{round(count)}{unit}"
    return f"{seconds:g}s"


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT")
    return host.strip("[]"), int(port)


# --- per-field declarations -------------------------------------------------------------------


@dataclass(frozen=True)
class Parser(Generic[T]):
    """Text -> value (ValueError with a short reason when invalid), and value -> text for the README."""

    parse: Callable[[str], T]
    show: Callable[[T], str] = str

    def __call__(self, text: str) -> T:
        return self.parse(text)


def text() -> Parser[str]:
    return Parser(lambda value: value)


def integer(*, minimum: int | None = None, maximum: int | None = None) -> Parser[int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise ValueError("not an integer") from None
        if minimum is not None and maximum is not None and not minimum <= number <= maximum:
            raise ValueError(f"must be between {minimum} and {maximum}")
        if minimum is not None and number < minimum:
            raise ValueError(f"must be at least {minimum}")
        if maximum is not None and number > maximum:
            raise ValueError(f"must be at most {maximum}")
        return number

    return Parser(parse)


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def boolean() -> Parser[bool]:
    def parse(value: str) -> bool:
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError("expected true or false")

    return Parser(parse, lambda flag: "true" if flag else "false")


def duration(*, minimum: float = 0.0) -> Parser[float]:
    def parse(value: str) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValueError("expected a duration such as 500ms, 30s, 5m or 1h") from None
        if seconds < minimum:
            raise ValueError(f"must be at least {minimum:g}s")
        return seconds

    return Parser(parse, format_duration)


def address() -> Parser[str]:
    """HOST:PORT, kept as written."""

    def parse(value: str) -> str:
        parse_address(value)
        return value

    return Parser(parse)


def choice(*choices: str) -> Parser[str]:
    """One of `choices`, case-insensitively; the value is lowercased."""

    def parse(value: str) -> str:
        if value.lower() not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return value.lower()

    return Parser(parse)


def path() -> Parser[pathlib.Path]:
    return Parser(lambda value: pathlib.Path(value).expanduser())


@dataclass(frozen=True)
class Setting(Generic[T]):
    """One environment variable: name, default, parser and the README's description.

    `shown` replaces the default in the README when it is not the literal value (e.g. derived
    from another setting); a None default without `shown` is documented as "unset".
    """

    env: str
    default: T
    parse: Callable[[str], T]
    doc: str
    shown: str | None = None
    # A secret's value never appears in an error message (the problems list is logged and printed).
    secret: bool = False

    def read(self, environ: Mapping[str, str], problems: list[str]) -> T:
        """The value (blank counts as unset); an invalid one is added to `problems`, the default returned."""
        raw = environ.get(self.env)
        if raw is None or not raw.strip():
            return self.default
        value = raw.strip()
        try:
            return self.parse(value)
        except ValueError as exc:
            shown = "(secret)" if self.secret else repr(value)
            problems.append(f"{self.env}={shown}: {exc}")
            return self.default

    def default_text(self) -> str:
        if self.shown is not None:
            return f"`{self.shown}`"
        if self.default is None:
            return "unset"
        show = self.parse.show if isinstance(self.parse, Parser) else str
        return f"`{show(self.default)}`"

    def row(self) -> str:
        """This setting as a README table row: `| `VAR` | default | meaning |`."""
        return f"| `{self.env}` | {self.default_text()} | {self.doc} |"


_SETTING_KEY = "conveyor.setting"


def setting(
    env: str,
    default: T,
    *,
    parse: Callable[[str], T],
    doc: str,
    shown: str | None = None,
    secret: bool = False,
) -> T:
    """A dataclass field read from `env` by `read_settings` (and listed by `declarations`)."""
    declared = Setting(env, default, parse, doc, shown, secret)
    result: T = field(default=default, metadata={_SETTING_KEY: declared})
    return result


def declarations(cls: type[DataclassInstance]) -> list[Setting[Any]]:
    """The settings declared on a dataclass with `setting(...)`, in field order."""
    return [f.metadata[_SETTING_KEY] for f in dataclasses.fields(cls) if _SETTING_KEY in f.metadata]


def read_settings(
    cls: type[S],
    environ: Mapping[str, str] | None = None,
    *,
    problems: list[str] | None = None,
    **values: Any,
) -> S:
    """Build `cls`, reading every `setting(...)` field from `environ` (default: os.environ).

    `values` supplies the other fields (and overrides declared ones). Every invalid variable is
    collected: appended to `problems` when given (the caller raises, e.g. `EnvReader.check()`),
    otherwise raised at once as one SettingsError listing them all.
    """
    source = os.environ if environ is None else environ
    collected: list[str] = [] if problems is None else problems
    before = len(collected)
    arguments = dict(values)
    for item in dataclasses.fields(cls):
        declared = item.metadata.get(_SETTING_KEY)
        if declared is not None and item.name not in arguments:
            arguments[item.name] = declared.read(source, collected)
    if problems is None and len(collected) > before:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(collected))
    return cls(**arguments)


TABLE_HEADER = "| Variable | Default | Meaning |\n|---|---|---|"


def markdown_rows(settings: Iterable[Setting[Any]]) -> list[str]:
    return [item.row() for item in settings]


def markdown_table(settings: Iterable[Setting[Any]]) -> str:
    """A README configuration table (header and one row per setting)."""
    return "\n".join([TABLE_HEADER, *markdown_rows(settings)])


def missing_rows(document: str, settings: Iterable[Setting[Any]]) -> list[str]:
    """The rows of `settings` that `document` lacks, verbatim (missing or documented differently)."""
    lines = {line.strip() for line in document.splitlines()}
    return [row for row in markdown_rows(settings) if row not in lines]


def markdown_section(document: str, heading: str) -> str:
    """The text under the line `heading` (e.g. `### conveyor-config`) up to the next heading of its level or above."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = document.splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise ValueError(f"no heading {heading!r}") from None
    section: list[str] = []
    for line in lines[start + 1 :]:
        marks = len(line) - len(line.lstrip("#"))
        if 0 < marks <= level and line[marks : marks + 1] == " ":
            break
        section.append(line)
    return "\n".join(section)


@dataclass
class EnvReader:
    """Typed access to an environment mapping that records every invalid value."""

    environ: Mapping[builtins.str, builtins.str] = field(default_factory=lambda: dict(os.environ))
    problems: list[builtins.str] = field(default_factory=list)

    def _raw(self, name: builtins.str) -> builtins.str | None:
        value = self.environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def str(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self._raw(name)
        return default if value is None else value

    def optional_str(self, name: builtins.str) -> builtins.str | None:
        return self._raw(name)

    def int(self, name: builtins.str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
        value = self._raw(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            self.problems.append(f"{name}={value!r}: not an integer")
            return default
        if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
            self.problems.append(f"{name}={number}: must be between {minimum} and {maximum}")
            return default
        return number

    def bool(self, name: builtins.str, default: bool) -> bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
        self.problems.append(f"{name}={value!r}: expected true or false")
        return default

    def duration(self, name: builtins.str, default: float, *, minimum: float = 0.0) -> float:
        value = self._raw(name)
        if value is None:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError:
            self.problems.append(f"{name}={value!r}: expected a duration such as 500ms, 30s, 5m or 1h")
            return default
        if seconds < minimum:
            self.problems.append(f"{name}={value!r}: must be at least {minimum}s")
            return default
        return seconds

    def address(self, name: builtins.str, default: builtins.str) -> builtins.str:
        value = self.str(name, default)
        try:
            parse_address(value)
        except ValueError:
            self.problems.append(f"{name}={value!r}: expected HOST:PORT")
            return default
        return value

    def choice(self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]) -> builtins.str:
        value = self.str(name, default)
        if value.lower() not in choices:
            self.problems.append(f"{name}={value!r}: expected one of {', '.join(choices)}")
            return default
        return value.lower()

    def path(self, name: builtins.str, default: pathlib.Path | None) -> pathlib.Path | None:
        value = self._raw(name)
        return default if value is None else pathlib.Path(value).expanduser()

    def read(self, declared: Setting[T]) -> T:
        """A declared setting, its problem (if any) recorded with the others."""
        return declared.read(self.environ, self.problems)

    def check(self) -> None:
        if self.problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(self.problems))


DATA_DIR = Setting(
    "CONVEYOR_DATA_DIR", pathlib.Path("data"), path(), "Directory of the default SQLite database", shown="./data"
)


def data_dir(reader: EnvReader) -> pathlib.Path:
    """CONVEYOR_DATA_DIR: where embedded state lives (SQLite file, NATS store); default ./data."""
    return reader.read(DATA_DIR)


NATS_URL = Setting(
    "CONVEYOR_NATS_URL",
    "nats://127.0.0.1:4222",
    text(),
    "NATS server with JetStream; several servers of one cluster comma-separated",
)
MAX_DELIVER = Setting(
    "CONVEYOR_BUS_MAX_DELIVER",
    DEFAULT_MAX_DELIVER,
    integer(minimum=1, maximum=100),
    "deliveries of a bus message to a consumer whose handler keeps failing before it is moved to the "
    "`CONVEYOR_DEAD_LETTERS` stream (1-100)",
)
BUS_REPLICAS = Setting(
    "CONVEYOR_BUS_REPLICAS",
    1,
    integer(minimum=1, maximum=5),
    "copies of every JetStream stream, consumer and KV bucket the service creates (1-5; `3` on a three-node "
    "NATS cluster); an existing stream with fewer is scaled up",
)
LOG_LEVEL = Setting(
    "CONVEYOR_LOG_LEVEL",
    "info",
    choice("debug", "info", "warning", "error"),
    "`debug`, `info`, `warning` or `error`",
)
LOG_FORMAT = Setting("CONVEYOR_LOG_FORMAT", "json", choice("json", "text"), "`json` (one object per line) or `text`")


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or len(value.split("://", 1)[1]) == 0:
        raise ValueError("expected an http:// or https:// URL")
    return value


TRACING = Setting(
    "CONVEYOR_TRACING",
    "off",
    choice("off", "otlp", "file"),
    "OpenTelemetry traces: `off`, `otlp` (OTLP/HTTP to `CONVEYOR_OTLP_ENDPOINT`) or `file` (JSON lines "
    "appended to `CONVEYOR_TRACING_FILE`)",
)
OTLP_ENDPOINT = Setting(
    "CONVEYOR_OTLP_ENDPOINT",
    "http://127.0.0.1:4318/v1/traces",
    Parser(_http_url),
    "OTLP/HTTP (protobuf) traces URL, path included, when `CONVEYOR_TRACING=otlp`",
)
TRACING_FILE = Setting(
    "CONVEYOR_TRACING_FILE",
    pathlib.Path("traces.jsonl"),
    path(),
    "file the spans are appended to (one JSON object per line) when `CONVEYOR_TRACING=file`",
    shown="./traces.jsonl",
)
DEFAULT_METRICS_DOC = "`HOST:PORT` to serve Prometheus `/metrics` on"


def _page_token_key(value: str) -> str:
    from conveyor.aip.page_tokens import PageTokenCodec

    PageTokenCodec.from_setting(value)  # raises ValueError with a reason that never quotes the secret
    return value


PAGE_TOKEN_KEY: Setting[str | None] = Setting(
    "CONVEYOR_PAGE_TOKEN_KEY",
    None,
    Parser(_page_token_key, show=lambda _: "(secret)"),
    "secrets (each ≥ 32 bytes, comma-separated; the first signs, the rest still verify) that sign page "
    "tokens; every replica must share them; unset: a random key per process, so tokens die with it",
    secret=True,
)


def metrics_address(service: str, doc: str = DEFAULT_METRICS_DOC) -> Setting[str | None]:
    """CONVEYOR_<SERVICE>_METRICS_ADDR."""
    return Setting(f"CONVEYOR_{service.upper()}_METRICS_ADDR", None, address(), doc)


@dataclass(frozen=True)
class TracingSettings:
    """Where spans go (`conveyor.tracing.setup.configure` reads these); off by default."""

    exporter: str = TRACING.default
    otlp_endpoint: str = OTLP_ENDPOINT.default
    file: pathlib.Path = TRACING_FILE.default

    @classmethod
    def read(cls, reader: EnvReader) -> TracingSettings:
        return cls(
            exporter=reader.read(TRACING), otlp_endpoint=reader.read(OTLP_ENDPOINT), file=reader.read(TRACING_FILE)
        )


@dataclass(frozen=True)
class CommonSettings:
    """Settings every service reads."""

    nats_url: str
    log_level: str
    log_format: str
    metrics_address: str | None
    tracing: TracingSettings = field(default_factory=TracingSettings)
    max_deliver: int = DEFAULT_MAX_DELIVER
    bus_replicas: int = 1

    @staticmethod
    def declarations(service: str, *, metrics_doc: str = DEFAULT_METRICS_DOC) -> list[Setting[Any]]:
        """What `read` reads, for the README table (the metrics address's meaning differs per service)."""
        return [
            NATS_URL,
            LOG_LEVEL,
            LOG_FORMAT,
            metrics_address(service, metrics_doc),
            TRACING,
            OTLP_ENDPOINT,
            TRACING_FILE,
            MAX_DELIVER,
            BUS_REPLICAS,
        ]

    @classmethod
    def read(cls, reader: EnvReader, *, service: str) -> CommonSettings:
        metrics = reader.read(metrics_address(service))
        return cls(
            nats_url=reader.read(NATS_URL),
            log_level=reader.read(LOG_LEVEL),
            log_format=reader.read(LOG_FORMAT),
            metrics_address=metrics,
            tracing=TracingSettings.read(reader),
            max_deliver=reader.read(MAX_DELIVER),
            bus_replicas=reader.read(BUS_REPLICAS),
        )

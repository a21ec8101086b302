"""Reading settings from the environment: once, at start-up, validated, failing fast.

Each service declares a frozen dataclass and builds it with an `EnvReader`, which
collects every problem before raising one `SettingsError` that lists them all.
"""

from __future__ import annotations

import builtins
import os
import pathlib
from collections.abc import Mapping
from dataclasses import dataclass, field


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


def parse_address(text: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:port`) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("expected HOST:PORT")
    return host.strip("[]"), int(port)


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

    def check(self) -> None:
        if self.problems:
            raise SettingsError("invalid settings:\n  " + "\n  ".join(self.problems))


def data_dir(reader: EnvReader) -> pathlib.Path:
    """CONVEYOR_DATA_DIR: where embedded state lives (SQLite file, NATS store); default ./data."""
    path = reader.path("CONVEYOR_DATA_DIR", pathlib.Path("data"))
    assert path is not None
    return path


@dataclass(frozen=True)
class CommonSettings:
    """Settings every service reads."""

    nats_url: str
    log_level: str
    log_format: str
    metrics_address: str | None

    @classmethod
    def read(cls, reader: EnvReader, *, service: str) -> CommonSettings:
        metrics = reader.optional_str(f"CONVEYOR_{service.upper()}_METRICS_ADDR")
        if metrics is not None:
            try:
                parse_address(metrics)
            except ValueError:
                reader.problems.append(f"CONVEYOR_{service.upper()}_METRICS_ADDR={metrics!r}: expected HOST:PORT")
                metrics = None
        return cls(
            nats_url=reader.str("CONVEYOR_NATS_URL", "nats://127.0.0.1:4222"),
            log_level=reader.choice("CONVEYOR_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
            log_format=reader.choice("CONVEYOR_LOG_FORMAT", "json", ("json", "text")),
            metrics_address=metrics,
        )

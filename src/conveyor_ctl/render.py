"""Output for conveyorctl: aligned tables, relative times, state colours, JSON/YAML.

Pure functions (no I/O besides the `Output` writer) so formatting is unit-tested.
Human output is for people and may change; `-o json` / `-o yaml` is the canonical
protobuf JSON mapping (lowerCamelCase field names, enum names, every field present)
and is what scripts should parse.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, Any

import yaml
from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message

OUTPUT_FORMATS = ("table", "json", "yaml", "name")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")

_COLOURS = {
    "red": "31",
    "green": "32",
    "yellow": "33",
    "blue": "34",
    "magenta": "35",
    "cyan": "36",
    "dim": "2",
    "bold": "1",
}

# Colour of each value a STATE / OUTCOME column can hold.
STATE_COLOURS = {
    "SUCCEEDED": "green",
    "MATCHED": "green",
    "ENABLED": "green",
    "SERVING": "green",
    "FAILED": "red",
    "ERROR": "red",
    "RUNNING": "yellow",
    "WARNING": "yellow",
    "QUEUED": "cyan",
    "DUPLICATE": "cyan",
    "SUPERSEDED": "magenta",
    "CANCELLED": "magenta",
    "DISABLED": "dim",
    "PIPELINE_DISABLED": "dim",
    "TAG_MISMATCH": "dim",
    "ORIGIN_MISMATCH": "dim",
    "NO_PIPELINE": "dim",
    "DEBUG": "dim",
}


def colour_enabled(stream: IO[str], environ: Mapping[str, str] | None = None) -> bool:
    """Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    env = os.environ if environ is None else environ
    if "NO_COLOR" in env:
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or not colour or not text:
        return text
    return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


# ---------------------------------------------------------------- times


def to_datetime(timestamp: timestamp_pb2.Timestamp) -> dt.datetime | None:
    """None for an unset timestamp (seconds and nanos both zero)."""
    if timestamp.seconds == 0 and timestamp.nanos == 0:
        return None
    value: dt.datetime = timestamp.ToDatetime(tzinfo=dt.UTC)
    return value


def relative_time(when: dt.datetime | None, now: dt.datetime) -> str:
    """`just now`, `42s ago`, `3m ago`, `5h ago`, `2d ago`; a date past 30 days; `in 3m` for the future."""
    if when is None:
        return "-"
    delta = (now - when).total_seconds()
    future = delta < 0
    seconds = abs(delta)
    if seconds < 2:
        return "just now"
    if seconds >= 30 * 86400:
        return when.astimezone().strftime("%Y-%m-%d")
    text = short_duration(seconds, precise=False)
    return f"in {text}" if future else f"{text} ago"


def short_duration(seconds: float, *, precise: bool = True) -> str:
    """`850ms`, `42s`, `3m05s` (or `3m` when not precise), `2h10m` (or `2h`), `3d4h` (or `3d`)."""
    if seconds < 1 and precise:
        return f"{int(seconds * 1000)}ms"
    total = int(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if precise and hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes:02d}m" if precise and minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs:02d}s" if precise and secs else f"{minutes}m"
    return f"{secs}s"


def local_time(when: dt.datetime | None) -> str:
    """Absolute local time for details and log lines."""
    if when is None:
        return "-"
    return when.astimezone().strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- tables


@dataclass
class Table:
    headers: Sequence[str]
    rows: list[list[str]] = field(default_factory=list)
    # Columns whose values are coloured by STATE_COLOURS.
    state_columns: frozenset[str] = frozenset({"STATE", "OUTCOME", "LEVEL"})

    def add(self, *cells: object) -> None:
        self.rows.append(["" if cell is None else str(cell) for cell in cells])

    def render(self, *, colour: bool = False) -> str:
        """Left-aligned columns separated by three spaces; the last column is not padded."""
        coloured_rows = []
        for row in self.rows:
            cells = []
            for header, cell in zip(self.headers, row, strict=True):
                hue = STATE_COLOURS.get(cell) if header in self.state_columns else None
                cells.append(paint(cell, hue, colour))
            coloured_rows.append(cells)
        widths = [visible_len(h) for h in self.headers]
        for row in coloured_rows:
            for index, cell in enumerate(row):
                widths[index] = max(widths[index], visible_len(cell))
        lines = [_join([paint(h, "bold", colour) for h in self.headers], widths)]
        lines.extend(_join(row, widths) for row in coloured_rows)
        return "\n".join(lines)


def _join(cells: Sequence[str], widths: Sequence[int]) -> str:
    parts = []
    last = len(cells) - 1
    for index, cell in enumerate(cells):
        pad = "" if index == last else " " * (widths[index] - visible_len(cell))
        parts.append(cell + pad)
    return "   ".join(parts).rstrip()


def details(pairs: Iterable[tuple[str, str]], *, colour: bool = False) -> str:
    """`key:   value` lines aligned on the values (a `get` view). A pair with key "" is a blank line."""
    items = list(pairs)
    width = max((len(k) for k, _ in items if k), default=0) + 1
    lines = []
    for key, value in items:
        if not key:
            lines.append("")
            continue
        shown = paint(value, STATE_COLOURS.get(value), colour) if key == "State" else value
        label = f"{key}:"
        lines.append(f"{label:<{width + 1}} {shown}".rstrip())
    return "\n".join(lines)


# ---------------------------------------------------------------- machine formats


def message_dict(message: Message) -> dict[str, Any]:
    """The canonical protobuf JSON shape with every field present, in .proto order (stable for scripts)."""
    data = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
    return _in_field_order(message.DESCRIPTOR, data)


def _in_field_order(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    if descriptor.full_name.startswith("google.protobuf."):
        return data  # well-known types print as strings/values, or keep their own shape
    ordered: dict[str, Any] = {}
    for field_descriptor in descriptor.fields:
        key = field_descriptor.json_name
        if key not in data:
            continue
        value = data[key]
        sub = field_descriptor.message_type
        if sub is not None and not sub.GetOptions().map_entry:
            if isinstance(value, list):
                value = [_in_field_order(sub, v) if isinstance(v, dict) else v for v in value]
            elif isinstance(value, dict):
                value = _in_field_order(sub, value)
        ordered[key] = value
    return ordered


def dump(data: Any, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "yaml":
        text: str = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False)
        return text.rstrip("\n")
    raise ValueError(f"unknown format {fmt!r}")


class Output:
    """Where a command writes: stdout for results, stderr for hints; knows the colour policy."""

    def __init__(self, fmt: str = "table", stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self.format = fmt
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.colour = colour_enabled(self.stdout)
        self.now = dt.datetime.now(dt.UTC)

    @property
    def machine(self) -> bool:
        return self.format in {"json", "yaml"}

    def print(self, text: str = "") -> None:
        print(text, file=self.stdout, flush=True)

    def hint(self, text: str) -> None:
        print(text, file=self.stderr, flush=True)

    def data(self, data: Any) -> None:
        self.print(dump(data, self.format))

    def table(self, table: Table, *, empty: str) -> None:
        if not table.rows:
            self.hint(empty)
            return
        self.print(table.render(colour=self.colour))

    def when(self, timestamp: timestamp_pb2.Timestamp) -> str:
        return relative_time(to_datetime(timestamp), self.now)

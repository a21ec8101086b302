"""Benchmark figures and how they are printed: an aligned table, or JSON with `--json`."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Target:
    """A goal a figure is compared with: `value OP threshold`, e.g. `< 50` ms or `>= 5000` /s."""

    op: str  # "<" or ">="
    threshold: float

    def met(self, value: float) -> bool:
        if self.op == "<":
            return value < self.threshold
        if self.op == ">=":
            return value >= self.threshold
        raise ValueError(f"unknown target operator {self.op!r}")

    def describe(self, unit: str) -> str:
        return f"{self.op} {format_number(self.threshold)} {unit}".strip()


@dataclass
class Figure:
    scenario: str
    name: str
    value: float | None
    unit: str
    target: Target | None = None
    # What exactly was measured and how (shown under the table).
    note: str = ""
    # A short companion figure shown next to the value, e.g. "p99 41.2 ms".
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.target is None or self.value is None or math.isnan(self.value):
            return None
        return self.target.met(self.value)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["target"] = (
            {"op": self.target.op, "threshold": self.target.threshold, "text": self.target.describe(self.unit)}
            if self.target
            else None
        )
        data["met"] = self.met
        if isinstance(self.value, float) and not math.isfinite(self.value):
            data["value"] = None
        return data


@dataclass
class ScenarioResult:
    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    # How the scenario was run (sizes, settings, what bounds it); printed under the table.
    conditions: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        target: Target | None = None,
        *,
        note: str = "",
        detail: str = "",
    ) -> Figure:
        figure = Figure(self.name, name, value, unit, target, note, detail)
        self.figures.append(figure)
        return figure


def format_number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def render_table(results: list[ScenarioResult]) -> str:
    rows: list[tuple[str, str, str, str, str]] = [("scenario", "figure", "value", "target", "met")]
    for result in results:
        if result.error:
            rows.append((result.name, "FAILED: " + result.error.splitlines()[0][:90], "", "", ""))
        for figure in result.figures:
            met = {True: "yes", False: "NO", None: ""}[figure.met]
            value = f"{format_number(figure.value)} {figure.unit}".strip() if figure.value is not None else "n/a"
            if figure.detail:
                value += f" ({figure.detail})"
            rows.append(
                (
                    figure.scenario,
                    figure.name,
                    value,
                    figure.target.describe(figure.unit) if figure.target else "",
                    met,
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    aligns = ["<", "<", ">", "<", "<"]
    lines = []
    for index, row in enumerate(rows):
        cells = [f"{cell:{align}{width}}" for cell, align, width in zip(row, aligns, widths, strict=True)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def render_notes(results: list[ScenarioResult]) -> str:
    lines = []
    for result in results:
        notes = list(result.conditions)
        notes += [f"{figure.name}: {figure.note}" for figure in result.figures if figure.note]
        if result.error:
            notes.append(f"error: {result.error}")
        if not notes:
            continue
        lines.append(f"[{result.name}] {result.title} ({result.seconds:.0f} s)")
        lines.extend(f"  - {note}" for note in notes)
    return "\n".join(lines)


def to_json(results: list[ScenarioResult], meta: dict[str, Any]) -> str:
    document = {
        "meta": meta,
        "scenarios": [
            {
                "name": result.name,
                "title": result.title,
                "seconds": round(result.seconds, 2),
                "conditions": result.conditions,
                "error": result.error or None,
                "figures": [figure.to_json() for figure in result.figures],
            }
            for result in results
        ],
    }
    return json.dumps(document, indent=2)

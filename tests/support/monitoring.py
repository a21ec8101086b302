"""deploy/monitoring/ read the way the tests check it: the PromQL of the alerting rules and of the Grafana
dashboard, the metric names and label matchers in it, what a /metrics page exports, and promtool.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

ROOT = pathlib.Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
RULES = MONITORING / "prometheus-rules.yaml"
DASHBOARD = MONITORING / "grafana-dashboard.json"
RULE_TESTS = MONITORING / "tests"

# Grafana's variables, replaced by something PromQL accepts so promtool can parse dashboard queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$cluster": ".*"}

_KEYWORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w:$])[A-Za-z_:][\w:]*")
_SELECTOR = re.compile(r"([A-Za-z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*,\s*\w+\s*\)\s*$")


@dataclass(frozen=True)
class Query:
    where: str  # e.g. "alert ConveyorRunsFailing", "panel 'Consumer lag' A"
    expr: str


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def rule_queries() -> list[Query]:
    return [Query(f"alert {rule.get('alert') or rule.get('record')}", rule["expr"]) for rule in rules()]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, those inside rows included."""
    for panel in (container or dashboard())["panels"]:
        yield panel
        if panel.get("panels"):
            yield from panels(panel)


def dashboard_queries() -> list[Query]:
    """Each panel target's expression, and each template variable's metric as a bare selector."""
    queries = [
        Query(f"panel {panel['title']!r} {target.get('refId', '?')}", target["expr"])
        for panel in panels()
        for target in panel.get("targets", [])
    ]
    for variable in dashboard().get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        found = _LABEL_VALUES.match(text)
        assert found, f"variable {variable['name']}: only label_values(METRIC, LABEL) is understood here: {text!r}"
        queries.append(Query(f"variable {variable['name']}", found.group(1)))
    return queries


def as_promql(expr: str) -> str:
    """A dashboard expression with Grafana's variables replaced (longest first)."""
    for name in sorted(GRAFANA_VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, GRAFANA_VARIABLES[name])
    return expr


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not its functions, keywords, labels or strings)."""
    text = _STRING.sub('""', as_promql(expr))
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _LABEL_LIST.sub(" ", text)
    names = set()
    for found in _IDENTIFIER.finditer(text):
        name = found.group(0)
        called = text[found.end() :].lstrip().startswith("(")
        if not called and name not in _KEYWORDS and name.lower() not in {"inf", "nan"}:
            names.add(name)
    return names


def label_matchers(expr: str) -> dict[str, set[str]]:
    """{metric name: label names it is matched on} for the selectors written `name{...}`."""
    found: dict[str, set[str]] = {}
    for selector in _SELECTOR.finditer(_STRING.sub('""', as_promql(expr))):
        found.setdefault(selector.group(1), set()).update(_MATCHER.findall(selector.group(2)))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in by/without/on/ignoring/group_left/group_right clauses."""
    text = _STRING.sub('""', as_promql(expr))
    clauses = [clause.split("(", 1)[1][:-1] for clause in _LABEL_LIST.findall(text)]
    return {label.strip() for clause in clauses for label in clause.split(",") if label.strip()}


# ---------------------------------------------------------------- what a /metrics page exports

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


@dataclass
class Exported:
    """What a scrape returned: the series names it may carry (families without samples yet included), the
    label names seen on each, and the samples."""

    names: set[str]
    labels: dict[str, set[str]]
    samples: list[tuple[str, dict[str, str], float]]

    @classmethod
    def parse(cls, text: str) -> Exported:
        exported = cls(set(), {}, [])
        for family in text_string_to_metric_families(text):
            exported.names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
            for sample in family.samples:
                exported.names.add(sample.name)
                exported.labels.setdefault(sample.name, set()).update(sample.labels)
                exported.samples.append((sample.name, dict(sample.labels), float(sample.value)))
        return exported

    def value(self, name: str, **labels: str) -> float | None:
        """The sample `name` whose labels are exactly `labels`, if served."""
        return next((value for found, have, value in self.samples if found == name and have == labels), None)

    def merge(self, other: Exported) -> Exported:
        labels = {name: set(found) for name, found in self.labels.items()}
        for name, found in other.labels.items():
            labels.setdefault(name, set()).update(found)
        return Exported(self.names | other.names, labels, self.samples + other.samples)


# ---------------------------------------------------------------- promtool


def promtool() -> str:
    """The promtool binary; fails (never skips) without it: Debian's `prometheus` package has it."""
    found = shutil.which("promtool")
    assert found, (
        "promtool not found on PATH: install Debian's prometheus package (`apt-get install prometheus`; "
        "`make test` as root does it through scripts/bootstrap.sh)"
    )
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], check=False, capture_output=True, text=True, timeout=60)

"""What ListPipelines and ListRuns may ask for: their AIP-160 filters (parsed by conveyor.aip.filtering)
and the query a page token is bound to (conveyor.aip.page_tokens.fingerprint)."""

from __future__ import annotations

import dataclasses
import json

from conveyor import refs
from conveyor.aip import filtering
from conveyor.aip.page_tokens import fingerprint
from conveyor.v1.run_pb2 import Run
from conveyor_config.domain.names import enum_names

PIPELINE_FILTER_EXAMPLE = 'e.g. source.registry = "registry.example.com" AND target.cluster = "prod"'
# Filter field -> value parser; the order is the one error messages list them in.
PIPELINE_FILTER_FIELDS: dict[str, filtering.ValueParser] = {
    "source.registry": refs.normalize_registry,
    "source.repository": str,
    "target.cluster": str,
    "target.namespace": str,
    "target.workload": str,
    "disabled": filtering.boolean("disabled"),
}
_PIPELINE_FILTER_ATTRIBUTES = {
    "source.registry": "registry",
    "source.repository": "repository",
    "target.cluster": "cluster",
    "target.namespace": "namespace",
    "target.workload": "workload",
    "disabled": "disabled",
}
RUN_FILTER_EXAMPLE = "e.g. state = FAILED OR state = RUNNING"


@dataclasses.dataclass(frozen=True)
class PipelineFilter:
    """Equality constraints on the filterable pipeline fields (all must hold)."""

    registry: str | None = None
    repository: str | None = None
    cluster: str | None = None
    namespace: str | None = None
    workload: str | None = None
    disabled: bool | None = None

    def canonical(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True, ensure_ascii=False)

    def page_query(self) -> str:
        """What a ListPipelines page token is bound to."""
        return fingerprint("pipelines", self.canonical())


def parse_pipeline_filter(text: str) -> PipelineFilter:
    """`source.registry = "demo.tencentcloudcr.com" AND target.cluster = "prod"` -> PipelineFilter."""
    values = filtering.parse_all_of(text, PIPELINE_FILTER_FIELDS, example=PIPELINE_FILTER_EXAMPLE)
    return PipelineFilter(**{_PIPELINE_FILTER_ATTRIBUTES[field]: value for field, value in values.items()})


@dataclasses.dataclass(frozen=True)
class RunFilter:
    """The run states to list; empty means every state."""

    states: frozenset[int] = frozenset()

    def canonical(self) -> str:
        return ",".join(str(s) for s in sorted(self.states))

    def page_query(self, pipeline_id: str) -> str:
        """What a ListRuns page token is bound to: the parent (`-` for all) and the states."""
        return fingerprint("runs", pipeline_id, self.canonical())


def _run_state(raw: str) -> int:
    names = enum_names(Run.State)
    if raw.upper() not in names:
        raise ValueError(f"unknown state {raw!r}; states: {', '.join(names)}")
    return int(Run.State.Value(raw.upper()))


def parse_run_filter(text: str) -> RunFilter:
    """`state = FAILED`, `state = FAILED OR state = RUNNING` -> RunFilter."""
    states = filtering.parse_any_of(text, "state", _run_state, subject="runs", example=RUN_FILTER_EXAMPLE)
    return RunFilter(frozenset(states))

"""Which pipelines a push matches, and why the others do not.

Pipelines are indexed by their normalised (registry host, repository): host names compare
case-insensitively with Docker Hub's aliases folded (`index.docker.io` = `docker.io`,
`nginx` = `library/nginx`), repository paths exactly. A push only looks at the
pipelines of its own repository, so matching cost does not grow with the pipelines of
other repositories.

Tag filters are `conveyor.tagfilter`'s (the implementation config validates with): compiled
once when the pipeline enters the index, and shared by the pipelines with the same filter. A
pipeline whose filter cannot be compiled (or whose source is unusable) never enters the
matcher; it is kept aside with the reason, so "why did my push not deploy?" still names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from conveyor import refs, tagfilter
from conveyor.names import parse_pipeline_name
from conveyor.v1 import bus_pb2, event_service_pb2, pipeline_pb2

Outcome = event_service_pb2.MatchDecision.Outcome
# Plain ints for the hot path: each attribute read on the protobuf enum wrapper is a Python-level
# __getattr__ (~1 us), paid for every pipeline of every push.
MATCHED = Outcome.MATCHED
TAG_MISMATCH = Outcome.TAG_MISMATCH
ORIGIN_MISMATCH = Outcome.ORIGIN_MISMATCH
PIPELINE_DISABLED = Outcome.PIPELINE_DISABLED
NO_PIPELINE = Outcome.NO_PIPELINE
# The normalised (registry host, repository) pipelines are indexed by.
RepoKey = refs.Repo

_ANY_ORIGINS = (pipeline_pb2.IMAGE_ORIGIN_UNSPECIFIED, pipeline_pb2.IMAGE_ORIGIN_ANY)


def origin_name(origin: int) -> str:
    return pipeline_pb2.ImageOrigin.Name(origin).removeprefix("IMAGE_ORIGIN_") if origin in _ORIGIN_VALUES else "?"


_ORIGIN_VALUES = set(pipeline_pb2.ImageOrigin.values())


class PipelineRejected(ValueError):
    """The pipeline cannot take part in matching; the message says why."""


@dataclass(frozen=True)
class CompiledPipeline:
    """A pipeline ready for matching: key normalised, tag filter compiled."""

    name: str
    pipeline_id: str
    pipeline: pipeline_pb2.Pipeline
    key: RepoKey
    filter_type: int
    filter_value: str
    tag_matcher: tagfilter.TagMatcher
    origin: int
    disabled: bool

    def evaluate(self, push: bus_pb2.ImagePushed) -> tuple[int, str]:
        """(outcome, reason) of this pipeline for `push`; the push's key is assumed equal."""
        if self.disabled:
            return PIPELINE_DISABLED, "pipeline is disabled"
        if self.origin not in _ANY_ORIGINS and push.origin != self.origin:
            return (
                ORIGIN_MISMATCH,
                f"origin {origin_name(push.origin)} is not the pipeline's origin {origin_name(self.origin)}",
            )
        matched, reason = self.tag_matcher.explain(push.tag)
        return (MATCHED if matched else TAG_MISMATCH), reason


@dataclass(frozen=True)
class ExcludedPipeline:
    name: str
    key: RepoKey | None
    reason: str
    update_time: tuple[int, int] = (0, 0)


def compile_pipeline(pipeline: pipeline_pb2.Pipeline) -> CompiledPipeline:
    """Prepare a pipeline for matching; PipelineRejected when it cannot be matched."""
    try:
        pipeline_id = parse_pipeline_name(pipeline.name).pipeline
    except Exception as exc:
        raise PipelineRejected(f"invalid pipeline name {pipeline.name!r}") from exc
    source = pipeline.source
    key = _source_key(pipeline)
    if key is None:
        raise PipelineRejected("source registry and repository are required")
    try:
        tag_matcher = tagfilter.compile_matcher(source.tag_filter)
    except tagfilter.InvalidTagFilter as exc:
        raise PipelineRejected(str(exc)) from None
    return CompiledPipeline(
        name=pipeline.name,
        pipeline_id=pipeline_id,
        pipeline=pipeline,
        key=key,
        filter_type=source.tag_filter.type or pipeline_pb2.TagFilter.ANY,
        filter_value=source.tag_filter.value,
        tag_matcher=tag_matcher,
        origin=source.origin,
        disabled=pipeline.disabled,
    )


def _source_key(pipeline: pipeline_pb2.Pipeline) -> RepoKey | None:
    """The pipeline's normalised repository; None when its source lacks a registry or repository."""
    key = refs.normalize_repo(pipeline.source.registry, pipeline.source.repository)
    return key if key.registry and key.repository else None


@dataclass(frozen=True)
class Decision:
    """One pipeline's verdict on one push (pipeline None for NO_PIPELINE)."""

    outcome: int
    reason: str
    pipeline: CompiledPipeline | None = None
    pipeline_name: str = ""

    def to_proto(self, run: str = "") -> event_service_pb2.MatchDecision:
        return event_service_pb2.MatchDecision(
            pipeline=self.pipeline_name,
            outcome=self.outcome,  # type: ignore[arg-type]
            run=run,
            reason=self.reason,
        )


def _update_time(pipeline: pipeline_pb2.Pipeline) -> tuple[int, int]:
    return pipeline.update_time.seconds, pipeline.update_time.nanos


def _version(pipeline: pipeline_pb2.Pipeline) -> tuple[str, int, int]:
    return pipeline.etag, pipeline.update_time.seconds, pipeline.update_time.nanos


@dataclass
class PipelineIndex:
    """Mutable index of the cached pipelines (mutated only by the cache, on the event loop)."""

    by_key: dict[RepoKey, dict[str, CompiledPipeline]] = field(default_factory=dict)
    by_name: dict[str, CompiledPipeline] = field(default_factory=dict)
    excluded: dict[str, ExcludedPipeline] = field(default_factory=dict)
    excluded_by_key: dict[RepoKey, dict[str, ExcludedPipeline]] = field(default_factory=dict)

    @classmethod
    def build(
        cls, pipelines: Iterable[pipeline_pb2.Pipeline], previous: PipelineIndex | None = None
    ) -> tuple[PipelineIndex, list[ExcludedPipeline]]:
        """A new index; pipelines unchanged since `previous` (same etag and update_time) are reused
        as compiled there, so a periodic full re-load does not recompile every regex."""
        index = cls()
        rejected = []
        for pipeline in pipelines:
            reusable = previous.by_name.get(pipeline.name) if previous is not None else None
            if reusable is not None and _version(reusable.pipeline) == _version(pipeline) and pipeline.etag:
                index._add(reusable)
            elif isinstance(result := index.upsert(pipeline), ExcludedPipeline):
                rejected.append(result)
        return index, rejected

    def __len__(self) -> int:
        return len(self.by_name)

    def get(self, name: str) -> CompiledPipeline | None:
        return self.by_name.get(name)

    def update_time(self, name: str) -> tuple[int, int] | None:
        if name in self.by_name:
            return _update_time(self.by_name[name].pipeline)
        if name in self.excluded:
            return self.excluded[name].update_time
        return None

    def upsert(self, pipeline: pipeline_pb2.Pipeline) -> CompiledPipeline | ExcludedPipeline:
        """Add or replace a pipeline; returns the ExcludedPipeline when it cannot be matched."""
        self.remove(pipeline.name)
        try:
            compiled = compile_pipeline(pipeline)
        except PipelineRejected as exc:
            key = _source_key(pipeline)
            excluded = ExcludedPipeline(pipeline.name, key, str(exc), _update_time(pipeline))
            self.excluded[pipeline.name] = excluded
            if key is not None:
                self.excluded_by_key.setdefault(key, {})[pipeline.name] = excluded
            return excluded
        self._add(compiled)
        return compiled

    def _add(self, compiled: CompiledPipeline) -> None:
        self.by_name[compiled.name] = compiled
        self.by_key.setdefault(compiled.key, {})[compiled.name] = compiled

    def remove(self, name: str) -> None:
        old = self.by_name.pop(name, None)
        if old is not None:
            bucket = self.by_key.get(old.key, {})
            bucket.pop(name, None)
            if not bucket:
                self.by_key.pop(old.key, None)
        gone = self.excluded.pop(name, None)
        if gone is not None and gone.key is not None:
            excluded_bucket = self.excluded_by_key.get(gone.key, {})
            excluded_bucket.pop(name, None)
            if not excluded_bucket:
                self.excluded_by_key.pop(gone.key, None)

    def match(self, push: bus_pb2.ImagePushed) -> list[Decision]:
        """Every pipeline's decision for `push`, sorted by pipeline name; NO_PIPELINE when none watch it."""
        key = refs.normalize_repo(push.registry, push.repository)
        candidates = self.by_key.get(key, {})
        excluded = self.excluded_by_key.get(key, {})
        if not candidates and not excluded:
            return [Decision(NO_PIPELINE, f"no pipeline watches {key[0]}/{key[1]}")]
        decisions = []
        for name in sorted(candidates):
            pipeline = candidates[name]
            outcome, reason = pipeline.evaluate(push)
            decisions.append(Decision(outcome, reason, pipeline, name))
        for name in sorted(excluded):
            # It cannot match anything until it is fixed; say so instead of staying silent.
            decisions.append(Decision(TAG_MISMATCH, f"excluded from matching: {excluded[name].reason}", None, name))
        return decisions

"""The use cases over in-memory fakes of their ports: matching -> runs, ingest, ListTags."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime as dt
from dataclasses import dataclass, field, replace

import pytest
from google.protobuf.message import Message

from conveyor import bus
from conveyor.aip.page_tokens import INVALID_TOKEN_MESSAGE, OTHER_QUERY_MESSAGE, PageTokenCodec
from conveyor.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from conveyor.names import new_id
from conveyor.v1 import bus_pb2, event_service_pb2, run_pb2
from conveyor_trigger.domain.formats import PayloadError, WebhookRequest
from conveyor_trigger.domain.matching import Outcome, PipelineIndex
from conveyor_trigger.usecases.ingest import ingest_webhook
from conveyor_trigger.usecases.match import InvalidPush, PushMatcher
from conveyor_trigger.usecases.ports import PushRecord
from conveyor_trigger.usecases.tags import list_tags
from tests.support.webhook_payloads import SAMPLES
from tests.unit.trigger.memory_history import MemoryHistory
from tests.unit.trigger.trigger_factories import DIGEST_A, DIGEST_B, FILTER, pipeline, push

STORED_AT = dt.datetime(2024, 5, 14, 9, 0, 1, tzinfo=dt.UTC)


class FakeBus:
    """JetStream-like: a message id seen before is a duplicate (not stored again)."""

    def __init__(self) -> None:
        self.stored: list[tuple[str, Message, str]] = []
        self.ids: set[str] = set()
        self.fail_subjects: set[str] = set()
        self.fail_after: int | None = None
        self.attempts = 0

    async def publish(self, subject: str, message: Message, msg_id: str) -> bool:
        self.attempts += 1
        if subject in self.fail_subjects or (self.fail_after is not None and self.attempts > self.fail_after):
            raise ConnectionError("nats: timeout")
        if msg_id in self.ids:
            return False
        self.ids.add(msg_id)
        self.stored.append((subject, copy.deepcopy(message), msg_id))
        return True

    def on(self, subject: str) -> list[Message]:
        return [message for s, message, _ in self.stored if s == subject]


@dataclass
class FakePushes:
    records: dict[str, PushRecord] = field(default_factory=dict)
    fail_mark: bool = False

    async def claim(self, push_key: str, event_id: str, time_ms: int) -> PushRecord:
        if push_key not in self.records:
            self.records[push_key] = PushRecord(push_key, new_id(), time_ms, event_id, {}, 1)
        return replace(self.records[push_key], deployed=dict(self.records[push_key].deployed))

    async def mark_deployed(self, record: PushRecord, deployed: dict[str, str]) -> None:
        if self.fail_mark:
            raise ConnectionError("kv unavailable")
        stored = self.records[record.push_key]
        stored.deployed = {**deployed, **stored.deployed}


class FakeResolver:
    def __init__(
        self, digest: str | None = None, error: Exception | None = None, delay: float = 0.0, slow: str = ""
    ) -> None:
        self.digest, self.error, self.delay, self.slow = digest, error, delay, slow
        self.calls: list[tuple[str, str, str]] = []

    async def resolve_digest(self, registry: str, repository: str, reference: str) -> str:
        self.calls.append((registry, repository, reference))
        if not self.slow or registry == self.slow:
            await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        assert self.digest is not None
        return self.digest


def make_matcher(*pipelines, resolver=None, timeout: float = 5.0):  # type: ignore[no-untyped-def]
    index, _ = PipelineIndex.build(pipelines)
    fake_bus, pushes, log = FakeBus(), FakePushes(), MemoryHistory()
    matcher = PushMatcher(
        index=lambda: index,
        publisher=fake_bus,
        pushes=pushes,
        events_log=log,
        resolver=resolver,
        digest_timeout=timeout,
    )
    return matcher, fake_bus, pushes, log


async def handle(matcher: PushMatcher, message: bus_pb2.ImagePushed, **kw: object) -> list:
    return await matcher.handle(message, stored_at=STORED_AT, fallback_event_id="bus:1", **kw)  # type: ignore[arg-type]


# --- matching -> runs ------------------------------------------------------------------------


async def test_a_match_publishes_queued_run_event_then_deploy_request() -> None:
    matcher, fake_bus, pushes, log = make_matcher(pipeline("web", pin_digest=True), pipeline("docs", repository="x/y"))
    decisions = await handle(matcher, push("v1"))

    (decision,) = decisions
    assert decision.outcome == Outcome.MATCHED and decision.pipeline == "pipelines/web"
    assert decision.run.startswith("pipelines/web/runs/")
    subjects = [s for s, _, _ in fake_bus.stored]
    assert subjects == [bus.RUN_EVENTS_SUBJECT, bus.DEPLOY_REQUESTED_SUBJECT]
    (event,) = fake_bus.on(bus.RUN_EVENTS_SUBJECT)
    (request,) = fake_bus.on(bus.DEPLOY_REQUESTED_SUBJECT)
    run_id = decision.run.rsplit("/", 1)[1]
    assert event.run == request.run == decision.run
    assert event.event_id == f"{run_id}:queued"
    assert fake_bus.stored[1][2] == decision.run  # DeployRequested msg id = run name
    assert event.state == run_pb2.Run.QUEUED and event.trigger == run_pb2.Run.PUSH
    assert (event.tag, event.digest, event.source_event_id) == ("v1", DIGEST_A, "distribution:e1")
    assert event.image == request.image == f"registry.example.com/team/app:v1@{DIGEST_A}"
    (entry,) = event.log_entries
    assert entry.step == "trigger" and entry.level == run_pb2.RunLogEntry.INFO
    assert "registry.example.com/team/app:v1@" in entry.message and "matched pipelines/web" in entry.message
    assert request.pipeline.name == "pipelines/web" and request.event_id == "distribution:e1"
    assert request.trigger == run_pb2.Run.PUSH
    # The run's time is the push's time (the time the event was stored).
    (record,) = pushes.records.values()
    assert record.time_ms == int(STORED_AT.timestamp() * 1000) and record.deployed == {"web": "distribution:e1"}
    (logged,) = (await log.list(event_service_pb2.ListEventsRequest())).events
    assert logged.decisions[0].run == decision.run


async def test_image_without_pin_digest_is_by_tag_in_the_pipelines_repository_spelling() -> None:
    matcher, fake_bus, *_ = make_matcher(pipeline("hub", registry="index.docker.io", repository="nginx"))
    await handle(matcher, push("1.25", registry="docker.io", repository="library/nginx"))
    (request,) = fake_bus.on(bus.DEPLOY_REQUESTED_SUBJECT)
    assert request.image == "docker.io/nginx:1.25"


async def test_redelivery_publishes_nothing_new_and_keeps_the_run() -> None:
    matcher, fake_bus, *_ = make_matcher(pipeline("web"), pipeline("api"))
    first = await handle(matcher, push("v1"))
    count = len(fake_bus.stored)
    again = await handle(matcher, push("v1"), redelivered=True)
    assert len(fake_bus.stored) == count == 4
    assert [(d.outcome, d.run) for d in again] == [(d.outcome, d.run) for d in first]
    assert {d.outcome for d in again} == {Outcome.MATCHED}


async def test_same_digest_under_another_tag_is_one_deploy_per_pipeline() -> None:
    matcher, fake_bus, *_ = make_matcher(pipeline("web"), pipeline("stable", filter_type=FILTER.EXACT, value="stable"))
    first = {d.pipeline: d for d in await handle(matcher, push("v1", event_id="harbor:1"))}
    second = {d.pipeline: d for d in await handle(matcher, push("stable", event_id="harbor:2"))}

    assert first["pipelines/web"].outcome == Outcome.MATCHED
    assert first["pipelines/stable"].outcome == Outcome.TAG_MISMATCH
    assert second["pipelines/web"].outcome == Outcome.DUPLICATE
    assert second["pipelines/web"].run == first["pipelines/web"].run
    assert "already deployed by this pipeline for event harbor:1" in second["pipelines/web"].reason
    assert second["pipelines/stable"].outcome == Outcome.MATCHED
    requests = fake_bus.on(bus.DEPLOY_REQUESTED_SUBJECT)
    assert sorted(r.pipeline.name for r in requests) == ["pipelines/stable", "pipelines/web"]
    # Another digest is another push.
    third = await handle(matcher, push("v2", digest=DIGEST_B, event_id="harbor:3"))
    assert {d.outcome for d in third} == {Outcome.MATCHED, Outcome.TAG_MISMATCH}
    assert len(fake_bus.on(bus.DEPLOY_REQUESTED_SUBJECT)) == 3


async def test_publish_failure_raises_and_the_retry_completes_exactly_once() -> None:
    matcher, fake_bus, pushes, log = make_matcher(*(pipeline(f"p{n}") for n in range(6)))
    fake_bus.fail_after = 5  # two full runs stored, the third RunEvent stored, then the bus fails
    with pytest.raises(ConnectionError):
        await handle(matcher, push("v1"))
    assert not next(iter(pushes.records.values())).deployed
    assert len(log) == 0
    fake_bus.fail_after = None
    decisions = await handle(matcher, push("v1"), redelivered=True)
    assert {d.outcome for d in decisions} == {Outcome.MATCHED}
    requests = fake_bus.on(bus.DEPLOY_REQUESTED_SUBJECT)
    assert sorted(r.pipeline.name for r in requests) == [f"pipelines/p{n}" for n in range(6)]
    assert len({r.run for r in requests}) == 6
    assert len(fake_bus.on(bus.RUN_EVENTS_SUBJECT)) == 6


async def test_failure_to_record_the_runs_raises_so_the_event_is_redelivered() -> None:
    matcher, fake_bus, pushes, _ = make_matcher(pipeline("web"))
    pushes.fail_mark = True
    with pytest.raises(ConnectionError):
        await handle(matcher, push("v1"))
    pushes.fail_mark = False
    await handle(matcher, push("v1"), redelivered=True)
    assert len(fake_bus.on(bus.DEPLOY_REQUESTED_SUBJECT)) == 1


async def test_no_match_claims_nothing_and_publishes_nothing() -> None:
    matcher, fake_bus, pushes, log = make_matcher(pipeline("web", filter_type=FILTER.EXACT, value="prod"))
    (decision,) = await handle(matcher, push("dev"))
    assert decision.outcome == Outcome.TAG_MISMATCH and decision.run == ""
    assert fake_bus.stored == [] and pushes.records == {}
    assert len(log) == 1


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"registry": ""}, "registry is empty"),
        ({"registry": "bad host!"}, "is not a host"),
        ({"repository": ""}, "repository is empty"),
        ({"repository": "Team/App"}, "not a valid repository path"),
        ({"tag": ""}, "tag is empty"),
        ({"digest": "md5:123"}, "not a valid digest"),
    ],
)
async def test_unusable_bus_events_are_invalid(changes: dict[str, str], problem: str) -> None:
    matcher, fake_bus, *_ = make_matcher(pipeline("web"))
    message = push("v1")
    for key, value in changes.items():
        setattr(message, key, value)
    with pytest.raises(InvalidPush, match=problem):
        await handle(matcher, message)
    assert fake_bus.stored == []


async def test_bus_event_without_id_or_format_gets_defaults_and_is_normalised() -> None:
    matcher, fake_bus, *_ = make_matcher(pipeline("web"))
    message = push("v1", registry="Registry.Example.COM", event_id="", source_format="")
    await handle(matcher, message)
    (event,) = fake_bus.on(bus.RUN_EVENTS_SUBJECT)
    assert event.source_event_id == "bus:1"
    assert "(bus event bus:1" in event.log_entries[0].message


# --- digest resolution ---------------------------------------------------------------------


async def test_missing_digest_is_resolved_before_matching() -> None:
    resolver = FakeResolver(DIGEST_B)
    matcher, fake_bus, pushes, _ = make_matcher(pipeline("web", pin_digest=True), resolver=resolver)
    await handle(matcher, push("v1", digest="", event_id="dockerhub:1"))
    assert resolver.calls == [("registry.example.com", "team/app", "v1")]
    (event,) = fake_bus.on(bus.RUN_EVENTS_SUBJECT)
    assert event.digest == DIGEST_B and event.image.endswith(f":v1@{DIGEST_B}")
    assert event.log_entries[1].step == "resolve-digest" and DIGEST_B in event.log_entries[1].message
    # Resolved digests make two digest-less events of one image one push.
    assert list(pushes.records) == [f"registry.example.com/team/app@{DIGEST_B}"]
    (second,) = await handle(matcher, push("latest", digest="", event_id="dockerhub:2"))
    assert second.outcome == Outcome.DUPLICATE


@pytest.mark.parametrize(
    ("resolver", "says"),
    [
        (FakeResolver(error=RuntimeError("registry.example.com: 401 unauthorized")), "401 unauthorized"),
        (FakeResolver(DIGEST_B, delay=1.0), "no answer within 0.05s"),
        (FakeResolver("latest"), "not a sha256 digest"),
    ],
)
async def test_unresolvable_digest_proceeds_by_tag_and_says_so(resolver: FakeResolver, says: str) -> None:
    matcher, fake_bus, *_ = make_matcher(pipeline("web", pin_digest=True), resolver=resolver, timeout=0.05)
    (decision,) = await handle(matcher, push("v1", digest=""))
    assert decision.outcome == Outcome.MATCHED
    (event,) = fake_bus.on(bus.RUN_EVENTS_SUBJECT)
    assert event.digest == "" and event.image == "registry.example.com/team/app:v1"
    warning = event.log_entries[1]
    assert warning.level == run_pb2.RunLogEntry.WARNING and warning.step == "resolve-digest"
    assert "could not be resolved" in warning.message and says in warning.message


async def test_the_registry_is_not_asked_when_nothing_would_deploy() -> None:
    resolver = FakeResolver(DIGEST_B)
    matcher, fake_bus, *_ = make_matcher(pipeline("web", filter_type=FILTER.EXACT, value="prod"), resolver=resolver)
    await handle(matcher, push("dev", digest=""))
    await handle(matcher, push("v1", digest="", repository="team/unwatched", event_id="e2"))
    assert resolver.calls == [] and fake_bus.stored == []


async def test_an_unreachable_registry_is_not_asked_again_for_a_while() -> None:
    resolver = FakeResolver(DIGEST_B, delay=1.0, slow="registry.example.com")
    matcher, fake_bus, *_ = make_matcher(
        pipeline("web"), pipeline("other", registry="other.example.com"), resolver=resolver, timeout=0.05
    )
    await handle(matcher, push("v1", digest="", event_id="e1"))
    await handle(matcher, push("v2", digest="", event_id="e2"))
    assert len(resolver.calls) == 1
    events = fake_bus.on(bus.RUN_EVENTS_SUBJECT)
    assert "no answer within 0.05s" in events[0].log_entries[1].message
    assert "did not answer moments ago" in events[1].log_entries[1].message
    # Another registry is still asked.
    await handle(matcher, push("v3", digest="", registry="other.example.com", event_id="e3"))
    assert len(resolver.calls) == 2
    assert fake_bus.on(bus.RUN_EVENTS_SUBJECT)[2].digest == DIGEST_B


# --- ingest ----------------------------------------------------------------------------------


async def test_ingest_stores_each_push_once_with_its_event_id() -> None:
    sample = SAMPLES["distribution-batch"]
    fake_bus = FakeBus()
    result = await ingest_webhook("distribution", WebhookRequest(body=sample.body()), fake_bus)
    assert len(result.stored) == 2 and result.duplicates == [] and len(result.ignored) == 1
    assert [msg_id for _, _, msg_id in fake_bus.stored] == result.stored
    assert all(s == bus.IMAGE_PUSHED_SUBJECT for s, _, _ in fake_bus.stored)
    again = await ingest_webhook("distribution", WebhookRequest(body=sample.body()), fake_bus)
    assert again.stored == [] and sorted(again.duplicates) == sorted(result.stored)


async def test_ingest_failure_is_unavailable_and_bad_payload_is_payload_error() -> None:
    fake_bus = FakeBus()
    fake_bus.fail_subjects.add(bus.IMAGE_PUSHED_SUBJECT)
    with pytest.raises(Unavailable, match="retry later"):
        await ingest_webhook("harbor", WebhookRequest(body=SAMPLES["harbor-push"].body()), fake_bus)
    with pytest.raises(PayloadError):
        await ingest_webhook("harbor", WebhookRequest(body=b"{"), fake_bus)


async def test_a_quay_repush_of_a_tag_with_a_new_image_is_stored_and_a_retry_is_not() -> None:
    """The hole: Quay's document is the same for every push of a tag, so its hash made a re-push a
    duplicate within the window and the new image was never deployed."""
    fake_bus, resolver = FakeBus(), FakeResolver(DIGEST_A)
    body = SAMPLES["quay-push-list"].body()

    async def deliver() -> list[str]:
        result = await ingest_webhook("quay", WebhookRequest(body=body), fake_bus, resolver=resolver)
        return result.stored

    first = await deliver()
    assert first and await deliver() == []  # the registry's retry of the same delivery
    resolver.digest = DIGEST_B  # the tag now points to a new image
    second = await deliver()
    assert len(second) == len(first) and not set(second) & set(first)
    pushes = fake_bus.on(bus.IMAGE_PUSHED_SUBJECT)
    assert [p.digest for p in pushes] == [DIGEST_A] * len(first) + [DIGEST_B] * len(second)  # type: ignore[attr-defined]
    assert all(p.event_id.endswith(p.digest) for p in pushes)  # type: ignore[attr-defined]


async def test_a_quay_push_whose_digest_cannot_be_resolved_is_told_apart_by_its_receive_time() -> None:
    fake_bus = FakeBus()
    body = SAMPLES["quay-push-list"].body()
    failing = FakeResolver(error=ConnectionError("registry down"))
    at = [dt.datetime(2024, 5, 14, 9, 0, s, tzinfo=dt.UTC) for s in (1, 1, 40)]
    stored = [
        (await ingest_webhook("quay", WebhookRequest(body=body, received_at=when), fake_bus, resolver=failing)).stored
        for when in at
    ]
    assert stored[0] and stored[1] == [] and stored[2] and not set(stored[0]) & set(stored[2])
    assert all(not p.digest for p in fake_bus.on(bus.IMAGE_PUSHED_SUBJECT))  # type: ignore[attr-defined]
    # Without registry access nothing tells a re-push from a retry: the id stays the document's hash.
    plain = [(await ingest_webhook("quay", WebhookRequest(body=body, received_at=t), FakeBus())).stored for t in at]
    assert plain[0] == plain[1] == plain[2] and not set(plain[0]) & set(stored[0])


async def test_formats_with_their_own_ids_or_digests_are_not_sent_to_the_registry() -> None:
    resolver = FakeResolver(DIGEST_A)
    stored = 0
    for sample in SAMPLES.values():
        if sample.format == "quay":
            continue
        request = WebhookRequest(body=sample.body(), headers=dict(sample.headers), query=dict(sample.query))
        with contextlib.suppress(PayloadError):
            stored += len((await ingest_webhook(sample.format, request, FakeBus(), resolver=resolver)).stored)
    assert stored > 10 and resolver.calls == []


# --- ListTags --------------------------------------------------------------------------------


class FakeLister:
    def __init__(self, tags: list[str], error: Exception | None = None) -> None:
        self.tags, self.error = tags, error
        self.calls: list[tuple[str, str, int, str]] = []

    async def list_tags(
        self, registry: str, repository: str, *, page_size: int = 100, page_token: str = ""
    ) -> tuple[list[str], str]:
        self.calls.append((registry, repository, page_size, page_token))
        if self.error is not None:
            raise self.error
        start = int(page_token or 0)
        page = self.tags[start : start + page_size]
        more = start + page_size < len(self.tags)
        return page, str(start + page_size) if more else ""


class RegistryError(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind, self.message = kind, message


CODEC = PageTokenCodec.ephemeral()


async def tags_for(request: event_service_pb2.ListTagsRequest, lister=None, resolver=None, loaded=True):  # type: ignore[no-untyped-def]
    index, _ = PipelineIndex.build([pipeline("web", registry="Index.Docker.io", repository="nginx")])
    return await list_tags(
        request, index=lambda: index, cache_loaded=lambda: loaded, lister=lister, resolver=resolver, codec=CODEC
    )


async def test_list_tags_of_a_pipeline_with_digests_and_pages() -> None:
    lister = FakeLister(["1.25", "1.26", "latest"])
    resolver = FakeResolver(DIGEST_A)
    first = await tags_for(
        event_service_pb2.ListTagsRequest(pipeline="pipelines/web", page_size=2, include_digests=True), lister, resolver
    )
    assert [(t.tag, t.digest) for t in first.tags] == [("1.25", DIGEST_A), ("1.26", DIGEST_A)]
    assert lister.calls == [("docker.io", "library/nginx", 2, "")]
    second = await tags_for(
        event_service_pb2.ListTagsRequest(pipeline="pipelines/web", page_size=2, page_token=first.next_page_token),
        lister,
    )
    assert [t.tag for t in second.tags] == ["latest"] and second.next_page_token == ""
    assert second.tags[0].digest == ""


async def test_list_tags_page_tokens_carry_the_registry_cursor_signed_and_bound_to_the_repository() -> None:
    lister = FakeLister(["1.25", "1.26", "latest"])
    first = await tags_for(event_service_pb2.ListTagsRequest(pipeline="pipelines/web", page_size=1), lister)
    assert first.next_page_token not in ("", "1")  # the registry's own token ("1") travels inside, signed
    # The same repository named directly continues the pages; another repository may not use them.
    direct = event_service_pb2.ListTagsRequest(
        registry="docker.io", repository="nginx", page_size=1, page_token=first.next_page_token
    )
    assert [t.tag for t in (await tags_for(direct, lister)).tags] == ["1.26"]
    assert lister.calls[-1] == ("docker.io", "library/nginx", 1, "1")
    calls = len(lister.calls)
    for token, message in [
        (first.next_page_token, OTHER_QUERY_MESSAGE),
        ("1", INVALID_TOKEN_MESSAGE),  # a registry token made up by the client is not accepted
    ]:
        request = event_service_pb2.ListTagsRequest(registry="r.example.com", repository="a/b", page_token=token)
        with pytest.raises(InvalidArgument) as error:
            await tags_for(request, lister)
        assert [(v.field, v.description) for v in error.value.violations] == [("page_token", message)]
    assert len(lister.calls) == calls  # refused before the registry is asked


async def test_list_tags_page_size_policy() -> None:
    lister = FakeLister([f"v{n}" for n in range(1500)])
    assert len((await tags_for(event_service_pb2.ListTagsRequest(pipeline="pipelines/web"), lister)).tags) == 100
    big = await tags_for(event_service_pb2.ListTagsRequest(pipeline="pipelines/web", page_size=5000), lister)
    assert len(big.tags) == 1000 and lister.calls[-1][2] == 1000


async def test_list_tags_by_registry_and_repository_and_digest_failures_stay_empty() -> None:
    resolver = FakeResolver(error=RuntimeError("boom"))
    response = await tags_for(
        event_service_pb2.ListTagsRequest(registry="r.example.com", repository="a/b", include_digests=True),
        FakeLister(["v1"]),
        resolver,
    )
    assert [(t.tag, t.digest) for t in response.tags] == [("v1", "")]


@pytest.mark.parametrize(
    ("request_", "error", "text"),
    [
        (event_service_pb2.ListTagsRequest(pipeline="pipelines/nope"), NotFound, "pipeline pipelines/nope not found"),
        (event_service_pb2.ListTagsRequest(pipeline="bad name"), InvalidArgument, "pipeline"),
        (event_service_pb2.ListTagsRequest(), InvalidArgument, "registry: required"),
        (event_service_pb2.ListTagsRequest(registry="r.io", repository="UPPER"), InvalidArgument, "repository"),
        (
            event_service_pb2.ListTagsRequest(registry="r.io", repository="a", page_size=-1),
            InvalidArgument,
            "page_size",
        ),
        (
            event_service_pb2.ListTagsRequest(pipeline="pipelines/web", registry="r.io"),
            InvalidArgument,
            "either pipeline",
        ),
    ],
)
async def test_list_tags_validation(request_: event_service_pb2.ListTagsRequest, error: type, text: str) -> None:
    with pytest.raises(error, match=text):
        await tags_for(request_, FakeLister([]))


async def test_list_tags_before_the_cache_is_loaded_is_unavailable() -> None:
    with pytest.raises(Unavailable, match="not been loaded"):
        await tags_for(event_service_pb2.ListTagsRequest(pipeline="pipelines/other"), FakeLister([]), loaded=False)


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("unauthorized", FailedPrecondition),
        ("forbidden", FailedPrecondition),
        ("not_found", NotFound),
        ("unreachable", Unavailable),
        ("protocol", Unavailable),
        ("invalid_argument", InvalidArgument),
    ],
)
async def test_registry_errors_are_mapped(kind: str, error: type) -> None:
    lister = FakeLister([], RegistryError(kind, f"registry says {kind}"))
    with pytest.raises(error, match=f"registry says {kind}"):
        await tags_for(event_service_pb2.ListTagsRequest(pipeline="pipelines/web"), lister)


async def test_list_tags_without_registry_access_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="not configured"):
        await tags_for(event_service_pb2.ListTagsRequest(pipeline="pipelines/web"), None)

"""The in-memory events log behind ListEvents: bounded, newest first, filters, stable pagination."""

from __future__ import annotations

import datetime as dt

import pytest

from conveyor.aip.page_tokens import INVALID_TOKEN_MESSAGE, OTHER_QUERY_MESSAGE, PageTokenCodec
from conveyor.errors import InvalidArgument
from conveyor.v1 import event_service_pb2
from conveyor_trigger.adapters.events_log import EventsLog
from tests.unit.trigger.trigger_factories import push

NOW = dt.datetime(2024, 5, 14, tzinfo=dt.UTC)
Decision = event_service_pb2.MatchDecision


def record(log: EventsLog, n: int, **kw: object) -> None:
    decision = Decision(outcome=Decision.NO_PIPELINE, reason="none")
    log.record(push(f"v{n}", event_id=f"e{n}", **kw), [decision], NOW + dt.timedelta(seconds=n))  # type: ignore[arg-type]


def tags(response: event_service_pb2.ListEventsResponse) -> list[str]:
    return [event.push.tag for event in response.events]


def test_newest_first_and_bounded() -> None:
    log = EventsLog(capacity=3)
    for n in range(5):
        record(log, n)
    response = log.list(event_service_pb2.ListEventsRequest())
    assert tags(response) == ["v4", "v3", "v2"]
    assert response.events[0].receive_time.ToDatetime(dt.UTC) == NOW + dt.timedelta(seconds=4)
    assert response.events[0].decisions[0].outcome == Decision.NO_PIPELINE
    assert response.next_page_token == ""


def test_pagination_is_stable_while_events_arrive() -> None:
    log = EventsLog()
    for n in range(5):
        record(log, n)
    first = log.list(event_service_pb2.ListEventsRequest(page_size=2))
    assert tags(first) == ["v4", "v3"] and first.next_page_token
    record(log, 5)  # arrives between pages
    second = log.list(event_service_pb2.ListEventsRequest(page_size=2, page_token=first.next_page_token))
    assert tags(second) == ["v2", "v1"]
    third = log.list(event_service_pb2.ListEventsRequest(page_size=2, page_token=second.next_page_token))
    assert tags(third) == ["v0"] and third.next_page_token == ""


def test_filters_by_registry_and_repository_with_reference_rules() -> None:
    log = EventsLog()
    record(log, 1, registry="docker.io", repository="library/nginx")
    record(log, 2, registry="registry.example.com", repository="team/app")
    record(log, 3, registry="registry.example.com", repository="team/other")
    by_host = log.list(event_service_pb2.ListEventsRequest(registry="REGISTRY.example.com"))
    assert tags(by_host) == ["v3", "v2"]
    hub = log.list(event_service_pb2.ListEventsRequest(registry="index.docker.io", repository="nginx"))
    assert tags(hub) == ["v1"]
    repo_only = log.list(event_service_pb2.ListEventsRequest(repository="team/app"))
    assert tags(repo_only) == ["v2"]


def test_an_event_handled_again_replaces_its_entry() -> None:
    log = EventsLog()
    record(log, 1)
    record(log, 2)
    record(log, 1)
    assert tags(log.list(event_service_pb2.ListEventsRequest())) == ["v1", "v2"]
    assert len(log) == 2


@pytest.mark.parametrize(
    "request_",
    [
        event_service_pb2.ListEventsRequest(page_size=-1),
        event_service_pb2.ListEventsRequest(page_token="garbage"),
        event_service_pb2.ListEventsRequest(page_token="ZXYxOm5vdGFudW1iZXI"),
    ],
)
def test_invalid_requests(request_: event_service_pb2.ListEventsRequest) -> None:
    with pytest.raises(InvalidArgument) as error:
        EventsLog().list(request_)
    assert error.value.violations


def test_page_size_is_capped() -> None:
    log = EventsLog(capacity=2000)
    for n in range(1500):
        record(log, n)
    assert len(log.list(event_service_pb2.ListEventsRequest(page_size=5000)).events) == 1000
    assert len(log.list(event_service_pb2.ListEventsRequest()).events) == 50


def rejection(log: EventsLog, request: event_service_pb2.ListEventsRequest) -> str:
    with pytest.raises(InvalidArgument) as error:
        log.list(request)
    [violation] = error.value.violations
    assert violation.field == "page_token"
    return violation.description


def test_page_tokens_are_signed_and_bound_to_the_filter() -> None:
    log = EventsLog(codec=PageTokenCodec(b"k" * 32))
    for n in range(4):
        record(log, n, registry="registry.example.com", repository="team/app")
    token = log.list(event_service_pb2.ListEventsRequest(page_size=1, repository="team/app")).next_page_token
    assert token and "team" not in token
    # The same filter however it is spelled: the token belongs to the normalised query.
    same = event_service_pb2.ListEventsRequest(page_size=1, repository="/team/app/", page_token=token)
    assert tags(log.list(same)) == ["v2"]
    other = event_service_pb2.ListEventsRequest(repository="team/other", page_token=token)
    assert rejection(log, other) == OTHER_QUERY_MESSAGE
    # Another key (another process without CONVEYOR_PAGE_TOKEN_KEY): not one of ours.
    elsewhere = EventsLog(codec=PageTokenCodec(b"o" * 32))
    assert rejection(elsewhere, event_service_pb2.ListEventsRequest(page_token=token)) == INVALID_TOKEN_MESSAGE
    # The former format (base64 of "ev1:<sequence>") is rejected once: clients list again without a token.
    assert rejection(log, event_service_pb2.ListEventsRequest(page_token="ZXYxOjI")) == INVALID_TOKEN_MESSAGE

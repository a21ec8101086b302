"""The pure parts of dead-lettering: redelivery waits, the dead letter's headers, reading one back."""

from __future__ import annotations

import datetime as dt

import pytest
from nats.js import api as js_api

from conveyor import bus, dead_letters
from conveyor.settings import CommonSettings, EnvReader, SettingsError


def test_redelivery_waits_triple_from_the_nak_delay_up_to_a_minute() -> None:
    assert [bus.redelivery_delay(1.0, n) for n in range(1, 7)] == [1.0, 3.0, 9.0, 27.0, 60.0, 60.0]
    # The default bound: four waits before the fifth and last delivery, about 40 s in all.
    assert sum(bus.redelivery_delay(1.0, n) for n in range(1, bus.DEFAULT_MAX_DELIVER)) == 40.0
    assert bus.redelivery_delay(0.0, 3) == 0.0  # a hand-back comes back at once


def test_every_consumer_spec_is_bounded_by_default() -> None:
    spec = bus.ConsumerSpec(bus.RUN_EVENTS_STREAM, bus.RUN_EVENTS_SUBJECT, "x")
    assert spec.max_deliver == bus.DEFAULT_MAX_DELIVER == 5


def test_max_deliver_is_a_common_setting() -> None:
    assert CommonSettings.read(EnvReader({}), service="config").max_deliver == 5
    assert CommonSettings.read(EnvReader({"CONVEYOR_BUS_MAX_DELIVER": "3"}), service="config").max_deliver == 3
    reader = EnvReader({"CONVEYOR_BUS_MAX_DELIVER": "0"})
    CommonSettings.read(reader, service="config")
    with pytest.raises(SettingsError, match="CONVEYOR_BUS_MAX_DELIVER='0': must be between 1 and 100"):
        reader.check()


def test_header_text_is_one_bounded_ascii_line() -> None:
    assert dead_letters.header_text("bad\n  value\té") == "bad value \\xe9"
    long = dead_letters.header_text("x" * 5000)
    assert len(long) == 1000 and long.endswith("...")


def test_a_dead_letter_keeps_the_originals_headers_but_not_its_publish_directives() -> None:
    original = dead_letters.Original(
        stream=bus.RUN_EVENTS_STREAM,
        subject=bus.RUN_EVENTS_SUBJECT,
        sequence=42,
        data=b"x",
        headers={
            bus.MSG_ID_HEADER: "e1",
            "Nats-Expected-Last-Sequence": "41",  # applied when stored; would fail the dead letter's publish
            bus.TYPE_HEADER: "conveyor.v1.RunEvent",
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "Conveyor-Dead-Reason": "forged",
        },
        deliveries=5,
    )
    headers = dead_letters.dead_letter_headers("conveyor-config-runs", original, "failed", "boom\ntraceback")
    assert headers == {
        bus.TYPE_HEADER: "conveyor.v1.RunEvent",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        "Conveyor-Dead-Msg-Id": "e1",
        # Its own id: a retry, or another replica, stores it once.
        bus.MSG_ID_HEADER: "conveyor-config-runs:CONVEYOR_RUN_EVENTS:42",
        "Conveyor-Dead-Consumer": "conveyor-config-runs",
        "Conveyor-Dead-Stream": bus.RUN_EVENTS_STREAM,
        "Conveyor-Dead-Subject": bus.RUN_EVENTS_SUBJECT,
        "Conveyor-Dead-Sequence": "42",
        "Conveyor-Dead-Deliveries": "5",
        "Conveyor-Dead-Reason": "failed",
        "Conveyor-Dead-Error": "boom traceback",
    }
    assert dead_letters.subject_for("conveyor-config-runs") == "conveyor.deadletters.conveyor-config-runs"


def test_a_stored_dead_letter_reads_back_and_replays_with_the_originals_headers() -> None:
    original = dead_letters.Original(
        bus.DEPLOY_REQUESTS_STREAM, bus.DEPLOY_REQUESTED_SUBJECT, 7, b"req", {bus.MSG_ID_HEADER: "r1", "A": "b"}, 2
    )
    stored = js_api.RawStreamMsg(
        subject=dead_letters.subject_for("conveyor-deployer"),
        seq=12,
        data=b"req",
        headers=dead_letters.dead_letter_headers("conveyor-deployer", original, "delivery_limit", "gave up"),
        time=dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    )
    letter = dead_letters.DeadLetter.from_stored(stored)
    assert (letter.sequence, letter.consumer, letter.stream, letter.subject) == (
        12,
        "conveyor-deployer",
        bus.DEPLOY_REQUESTS_STREAM,
        bus.DEPLOY_REQUESTED_SUBJECT,
    )
    assert (letter.stream_sequence, letter.deliveries, letter.reason, letter.error) == (
        7,
        2,
        "delivery_limit",
        "gave up",
    )
    assert (letter.msg_id, letter.headers, letter.data) == ("r1", {"A": "b"}, b"req")
    # Not the original id: it may still be inside its stream's duplicate window.
    assert letter.replay_headers() == {"A": "b", bus.MSG_ID_HEADER: "r1.replay-12"}


def test_unprocessable_carries_its_reason() -> None:
    assert bus.Unprocessable("no run name").reason == dead_letters.INVALID
    error = bus.Unprocessable("junk", reason=dead_letters.UNDECODABLE)
    assert (error.error, error.reason, str(error)) == ("junk", "undecodable", "junk")

"""RunEvents that can never be stored are terminated at the consumer, counted by reason, never redelivered."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import timestamp_pb2
from nats.aio.client import Client as NATS
from prometheus_client import REGISTRY

from conveyor.v1 import bus_pb2, run_service_pb2
from conveyor.v1.run_pb2 import Run, RunLogEntry as Entry
from tests.integration.config.conftest import StartConfig, connected
from tests.integration.config.support import create_pipeline, publish_event, run_event, settled
from tests.support.net import eventually

RUN = "pipelines/web/runs/r01jq4ezk5y8v6p1x0m3d2c7b9a"
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second a Timestamp may hold


def bad_input(reason: str) -> float:
    return REGISTRY.get_sample_value("conveyor_bad_input_total", {"source": "run_events", "reason": reason}) or 0.0


def malformed() -> float:
    return REGISTRY.get_sample_value("conveyor_config_run_events_total", {"outcome": "malformed"}) or 0.0


def timed(event_id: str, seconds: int, nanos: int = 0) -> bus_pb2.RunEvent:
    event = run_event(RUN, event_id, Run.RUNNING, "patching", image="x/app:v1")
    event.time.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds, nanos=nanos))
    return event


def entry_timed(event_id: str, seconds: int) -> bus_pb2.RunEvent:
    event = run_event(RUN, event_id, Run.RUNNING, "patching", image="x/app:v1")
    event.log_entries[0].time.CopyFrom(timestamp_pb2.Timestamp(seconds=seconds))
    return event


BAD_EVENTS: list[tuple[str, bus_pb2.RunEvent]] = [
    ("bad_timestamp", timed("seconds-overflow", 2**62)),  # no microsecond count holds it: storage fails
    ("bad_timestamp", timed("year-10000", MAX_SECONDS + 1)),
    ("bad_timestamp", timed("before-year-1", -62_135_596_801)),
    ("bad_timestamp", timed("nanos-1e9", 1_700_000_000, 1_000_000_000)),
    ("bad_timestamp", timed("negative-nanos", 1_700_000_000, -1)),
    ("bad_timestamp", entry_timed("entry-year-10000", MAX_SECONDS + 1)),
    ("bad_enum", run_event(RUN, "state-99", 99, "x", image="x/app:v1")),
    ("bad_enum", run_event(RUN, "trigger-7", Run.RUNNING, "x", trigger=7)),
    ("bad_enum", bus_pb2.RunEvent(run=RUN, event_id="level-42", log_entries=[Entry(level=42, message="x")])),  # type: ignore[arg-type]
    ("bad_run_name", run_event("pipelines/web/runs/Not_A_Run", "bad-run-id", Run.RUNNING)),
    ("bad_event_id", run_event(RUN, "x" * 513, Run.RUNNING)),
]


@pytest.mark.parametrize(("reason", "event"), BAD_EVENTS, ids=[e.event_id[:20] for _, e in BAD_EVENTS])
async def test_an_event_that_can_never_be_stored_is_terminated_and_counted(
    start_config: StartConfig, database_url: str, nc: NATS, reason: str, event: bus_pb2.RunEvent
) -> None:
    service = await start_config(database_url=database_url)
    js = nc.jetstream()
    async with connected(service.address) as clients:
        await create_pipeline(clients, "web")
        counted, dropped = bad_input(reason), malformed()
        await publish_event(js, event, msg_id="bad-1")
        await eventually(lambda: settled(js))  # terminated at once, not nak'ed again and again
        assert bad_input(reason) - counted == 1
        assert malformed() - dropped == 1
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=RUN))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND

        # The consumer goes on with the next event.
        await publish_event(js, timed("good-1", MAX_SECONDS, 999_999_999))
        await eventually(lambda: settled(js))
        run = await clients.runs.GetRun(run_service_pb2.GetRunRequest(name=RUN))
        assert (run.state, run.start_time.seconds) == (Run.RUNNING, MAX_SECONDS)

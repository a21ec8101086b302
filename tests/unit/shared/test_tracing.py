"""conveyor.tracing: off costs nothing, spans nest and cross a carrier as W3C traceparent, set-up from settings."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import textwrap
import time

import pytest

from conveyor import tracing
from conveyor.settings import CommonSettings, EnvReader, TracingSettings
from conveyor.tracing import SpanKind, setup
from conveyor.tracing.rpc import client_interceptors, server_interceptors
from conveyor.v1 import bus_pb2
from tests.support.net import free_port
from tests.support.tracing import OtlpReceiver, memory_tracer, tree_problems, wait_for_spans

RUN = "pipelines/web/runs/01J0000000000000000000000A"


def test_off_spans_are_non_recording_and_nothing_is_propagated() -> None:
    assert not tracing.enabled()
    with tracing.span("anything", attributes={"a": 1}) as span:
        assert not span.is_recording()
        assert not span.get_span_context().is_valid
    headers: dict[str, str] = {}
    tracing.inject(headers)
    assert headers == {}
    assert tracing.extract({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}) is None
    assert tracing.current() is None
    assert client_interceptors() == [] and server_interceptors() == []
    with tracing.publishing("s", "id") as published, tracing.consuming("s", {}, "durable") as consumed:
        assert not published.is_recording() and not consumed.is_recording()


def test_off_never_imports_the_sdk() -> None:
    """The default set-up loads only the API: no SDK, no exporter, no requests."""
    code = textwrap.dedent(
        """
        import sys
        from conveyor import bus, server, tracing
        from conveyor.settings import CommonSettings, EnvReader
        from conveyor.tracing import setup
        common = CommonSettings.read(EnvReader({}), service="x")
        assert setup.configure("conveyor-x", common.tracing) is False
        with tracing.span("s"):
            pass
        loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk", "opentelemetry.exporter")))
        print(loaded)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout + done.stderr


def test_spans_nest_and_continue_across_a_carrier() -> None:
    with memory_tracer() as memory:
        headers: dict[str, str] = {}
        with tracing.span("outer") as outer, tracing.publishing("conveyor.x", "msg-1") as published:
            tracing.inject(headers)
        assert headers["traceparent"].split("-")[1] == f"{outer.get_span_context().trace_id:032x}"
        with tracing.consuming("conveyor.x", headers, "durable"), tracing.span("inner"):
            pass
        spans = {span.name: span for span in memory.spans()}
    assert set(spans) == {"outer", "publish conveyor.x", "process conveyor.x", "inner"}
    assert tree_problems(spans.values()) == []
    assert spans["process conveyor.x"].parent_id == f"{published.get_span_context().span_id:016x}"
    assert spans["process conveyor.x"].kind == "CONSUMER"
    assert spans["publish conveyor.x"].attributes["messaging.message.id"] == "msg-1"
    assert spans["inner"].parent_id == spans["process conveyor.x"].span_id


def test_a_message_without_traceparent_starts_its_own_trace() -> None:
    with memory_tracer() as memory:
        with tracing.span("unrelated"), tracing.consuming("conveyor.x", {"Nats-Msg-Id": "m"}, "durable"):
            pass
        spans = {span.name: span for span in memory.spans()}
    assert spans["process conveyor.x"].parent_id == ""
    assert spans["process conveyor.x"].trace_id != spans["unrelated"].trace_id


def test_a_saved_context_parents_work_done_later() -> None:
    with memory_tracer() as memory:
        with tracing.span("submit"):
            saved = tracing.current()
        with tracing.attached(saved), tracing.span("later"):
            pass
        spans = {span.name: span for span in memory.spans()}
    assert spans["later"].parent_id == spans["submit"].span_id


def test_exceptions_mark_the_span_failed() -> None:
    with memory_tracer() as memory:
        with pytest.raises(RuntimeError), tracing.span("boom"):
            raise RuntimeError("no")
        [span] = memory.spans()
    assert span.status == "ERROR"


def test_run_attributes_carry_the_full_name_and_the_pipeline() -> None:
    assert tracing.run_attributes(RUN) == {"conveyor.run": RUN, "conveyor.pipeline": "web"}
    assert tracing.run_attributes("odd") == {"conveyor.run": "odd"}
    request = bus_pb2.DeployRequested(run=RUN)
    assert tracing.message_attributes(request) == tracing.run_attributes(RUN)
    assert tracing.message_attributes(bus_pb2.ImagePushed()) == {}
    assert tracing.message_attributes(bus_pb2.RunEvent()) == {}


def test_tracing_settings_are_common_and_validated() -> None:
    reader = EnvReader(
        {"CONVEYOR_TRACING": "OTLP", "CONVEYOR_OTLP_ENDPOINT": "http://collector:4318/v1/traces"},
    )
    common = CommonSettings.read(reader, service="config")
    assert common.tracing == TracingSettings("otlp", "http://collector:4318/v1/traces", pathlib.Path("traces.jsonl"))
    assert reader.problems == []
    bad = EnvReader({"CONVEYOR_TRACING": "jaeger", "CONVEYOR_OTLP_ENDPOINT": "collector:4318"})
    assert CommonSettings.read(bad, service="config").tracing == TracingSettings()
    assert bad.problems == [
        "CONVEYOR_TRACING='jaeger': expected one of off, otlp, file",
        "CONVEYOR_OTLP_ENDPOINT='collector:4318': expected an http:// or https:// URL",
    ]
    names = [item.env for item in CommonSettings.declarations("config")]
    assert {"CONVEYOR_TRACING", "CONVEYOR_OTLP_ENDPOINT", "CONVEYOR_TRACING_FILE"} <= set(names)


def test_file_exporter_appends_one_json_line_per_span(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    path = tmp_path / "spans" / "traces.jsonl"
    path.parent.mkdir()
    path.write_text('{"earlier": true}\n')
    try:
        assert setup.configure("conveyor-test", TracingSettings("file", file=path))
        with (
            tracing.span("parent", attributes=tracing.run_attributes(RUN)),
            tracing.span("child", kind=SpanKind.CLIENT),
        ):
            pass
    finally:
        setup.shutdown()  # flushes the batch
    assert not tracing.enabled()
    lines = path.read_text().splitlines()
    assert json.loads(lines[0]) == {"earlier": True}
    records = {record["name"]: record for record in map(json.loads, lines[1:])}
    assert set(records) == {"parent", "child"}
    assert records["child"]["parentSpanId"] == records["parent"]["spanId"]
    assert records["child"]["traceId"] == records["parent"]["traceId"]
    assert records["child"]["kind"] == "CLIENT"
    assert records["parent"]["service"] == "conveyor-test"
    assert records["parent"]["attributes"] == {"conveyor.run": RUN, "conveyor.pipeline": "web"}


def test_otlp_exporter_sends_to_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    with OtlpReceiver() as receiver:
        try:
            assert setup.configure("conveyor-test", TracingSettings("otlp", otlp_endpoint=receiver.endpoint))
            with tracing.span("root"), tracing.span("leaf", attributes={"n": 3}):
                pass
        finally:
            setup.shutdown()
        spans = wait_for_spans(receiver, {"root", "leaf"}, timeout=10)
    by_name = {span.name: span for span in spans}
    assert tree_problems(spans) == []
    assert by_name["leaf"].attributes == {"n": 3}
    # OTEL_SERVICE_NAME overrides the service's own name, as in any OpenTelemetry SDK.
    assert {span.service for span in spans} == {"renamed"}


def test_a_collector_that_is_down_delays_the_exit_flush_by_seconds_at_most(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    endpoint = f"http://127.0.0.1:{free_port()}/v1/traces"  # nothing listens: every attempt is refused
    assert setup.configure("conveyor-test", TracingSettings("otlp", otlp_endpoint=endpoint))
    with tracing.span("lost"):
        pass
    started = time.monotonic()
    setup.shutdown()
    assert time.monotonic() - started < setup.EXPORT_TIMEOUT + 2

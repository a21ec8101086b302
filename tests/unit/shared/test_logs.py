"""conveyor.logs: the JSON and text formats carry the same fields."""

from __future__ import annotations

import json
import logging
import re
import sys

import pytest

from conveyor import logs


def record(message: str = "run %s started", *args: object, **extra: object) -> logging.LogRecord:
    exc_info = extra.pop("exc_info", None)
    return logging.getLogger("conveyor.test").makeRecord(
        "conveyor.test", logging.WARNING, __file__, 1, message, args, exc_info, extra=extra
    )


def text_fields(line: str) -> dict[str, str]:
    """The `key=value` pairs after the message, values unquoted (JSON strings decoded)."""
    pairs = re.findall(r' ([A-Za-z_][\w.]*)=("(?:[^"\\]|\\.)*"|\S+)', line)
    return {key: json.loads(value) if value.startswith('"') else value for key, value in pairs}


def test_text_format_carries_every_field_of_the_json_format() -> None:
    extra = {"durable": "conveyor-deployer", "attempt": 3, "retry_in_s": 0.5, "ok": True, "missing": None}
    with logs.bind(pipeline="pipelines/web", run="pipelines/web/runs/r01"):
        made = record("run %s started", "r01", **extra, detail=ValueError("bad thing"))
        as_json = json.loads(logs.JsonFormatter("conveyor-config").format(made))
        as_text = logs.TextFormatter("conveyor-config").format(made)
    assert as_json["message"] == "run r01 started"
    assert re.match(
        r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} WARNING conveyor-config conveyor.test: run r01 started ", as_text
    )
    header = {"time", "level", "service", "logger", "message"}
    assert set(text_fields(as_text)) == set(as_json) - header
    assert text_fields(as_text) == {
        "pipeline": "pipelines/web",
        "run": "pipelines/web/runs/r01",
        "durable": "conveyor-deployer",
        "attempt": "3",
        "retry_in_s": "0.5",
        "ok": "true",
        "missing": "null",
        "detail": "bad thing",
    }
    assert (as_json["attempt"], as_json["ok"], as_json["missing"], as_json["detail"]) == (3, True, None, "bad thing")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("plain", "plain"),
        ("pipelines/web/runs/r01", "pipelines/web/runs/r01"),
        ("two words", '"two words"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak", '"line\\nbreak"'),
        ("tab\there", '"tab\\there"'),
        ("back\\slash", '"back\\\\slash"'),
        ("héllo", "héllo"),
        (7, "7"),
        (0.25, "0.25"),
        (False, "false"),
        (None, "null"),
    ],
)
def test_values_are_quoted_only_when_needed(value: logs.Plain, shown: str) -> None:
    assert logs.logfmt_value(value) == shown


def test_text_format_puts_the_traceback_after_the_fields() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        made = record("handler failed", durable="d1", exc_info=sys.exc_info())
    first, *rest = logs.TextFormatter("conveyor-trigger").format(made).splitlines()
    assert first.endswith("conveyor.test: handler failed durable=d1")
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "RuntimeError: boom"
    assert "exception" in json.loads(logs.JsonFormatter("conveyor-trigger").format(made))


def test_a_line_without_fields_is_just_the_header_and_message() -> None:
    line = logs.TextFormatter("conveyor-deployer").format(record("ready"))
    assert line.endswith(" WARNING conveyor-deployer conveyor.test: ready")


def test_a_bound_run_is_always_the_full_resource_name() -> None:
    from conveyor import logs as logs_module

    with logs_module.bind(pipeline="web", run="r01"):
        assert logs_module._context.get()["run"] == "pipelines/web/runs/r01"
    with logs_module.bind(pipeline="web", run="pipelines/web/runs/r02"):
        assert logs_module._context.get()["run"] == "pipelines/web/runs/r02"
    with logs_module.bind(pipeline="web"), logs_module.bind(run="r03"):
        assert logs_module._context.get()["run"] == "pipelines/web/runs/r03"

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
import yaml

from conveyor.v1 import pipeline_pb2
from conveyor_ctl import render

NOW = dt.datetime(2025, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("delta", "expected"),
    [
        (dt.timedelta(seconds=0.5), "just now"),
        (dt.timedelta(seconds=42), "42s ago"),
        (dt.timedelta(minutes=3, seconds=20), "3m ago"),
        (dt.timedelta(hours=5, minutes=59), "5h ago"),
        (dt.timedelta(days=2, hours=3), "2d ago"),
        (dt.timedelta(minutes=-3), "in 3m"),
    ],
)
def test_relative_time(delta: dt.timedelta, expected: str) -> None:
    assert render.relative_time(NOW - delta, NOW) == expected


def test_relative_time_falls_back_to_a_date_after_a_month_and_dash_when_unset() -> None:
    old = dt.datetime(2024, 12, 1, 12, 0, tzinfo=dt.UTC)
    assert render.relative_time(old, NOW) == old.astimezone().strftime("%Y-%m-%d")
    assert render.relative_time(None, NOW) == "-"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.25, "250ms"), (42, "42s"), (185, "3m05s"), (180, "3m"), (7800, "2h10m"), (90000, "1d1h")],
)
def test_short_duration(seconds: float, expected: str) -> None:
    assert render.short_duration(seconds) == expected


def test_unset_timestamp_is_none() -> None:
    assert render.to_datetime(pipeline_pb2.Pipeline().create_time) is None


def test_table_aligns_columns_and_does_not_pad_the_last() -> None:
    table = render.Table(["NAME", "STATE", "NOTE"])
    table.add("web", "SUCCEEDED", "ok")
    table.add("a-much-longer-name", "FAILED", "")
    lines = table.render().split("\n")
    assert lines == [
        "NAME                 STATE       NOTE",
        "web                  SUCCEEDED   ok",
        "a-much-longer-name   FAILED",
    ]


def test_table_colours_states_without_breaking_alignment() -> None:
    table = render.Table(["NAME", "STATE", "AGE"])
    table.add("web", "FAILED", "1m ago")
    table.add("api", "SUCCEEDED", "2m ago")
    coloured = table.render(colour=True).split("\n")
    plain = table.render().split("\n")
    assert "\x1b[31mFAILED\x1b[0m" in coloured[1] and "\x1b[32mSUCCEEDED\x1b[0m" in coloured[2]
    stripped = [render._ANSI.sub("", line) for line in coloured]
    assert stripped == plain


def test_colour_only_on_a_terminal_without_no_color() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert render.colour_enabled(Terminal(), {}) is True
    assert render.colour_enabled(Terminal(), {"NO_COLOR": ""}) is False
    assert render.colour_enabled(io.StringIO(), {}) is False


def test_details_align_values_and_keep_blank_separators() -> None:
    text = render.details([("Name", "pipelines/web"), ("", ""), ("Rollout timeout", "5m")])
    assert text.split("\n") == ["Name:             pipelines/web", "", "Rollout timeout:  5m"]


def test_message_dict_has_every_field_in_proto_order() -> None:
    pipeline = pipeline_pb2.Pipeline(name="pipelines/web", etag="e1")
    pipeline.source.registry = "r.example.com"
    data = render.message_dict(pipeline)
    assert list(data)[:4] == ["name", "displayName", "description", "disabled"]
    assert list(data["source"]) == ["registry", "repository", "origin"]  # tagFilter unset: a message
    assert data["disabled"] is False and data["etag"] == "e1"


def test_dump_json_and_yaml_round_trip() -> None:
    data = {"name": "pipelines/wéb", "n": 1, "items": [{"a": True}]}
    assert json.loads(render.dump(data, "json")) == data
    assert yaml.safe_load(render.dump(data, "yaml")) == data
    assert "wéb" in render.dump(data, "yaml")

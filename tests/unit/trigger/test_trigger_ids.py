"""Deterministic ids: push keys, KV keys, run ids (same push + pipeline -> same run)."""

from __future__ import annotations

import re

from conveyor_trigger.domain import ids
from tests.unit.trigger.trigger_factories import DIGEST_A, push


def test_push_key_is_the_image_digest_when_known() -> None:
    assert ids.push_key(push("v1")) == f"registry.example.com/team/app@{DIGEST_A}"
    # Same digest under another tag, from another event: the same push.
    assert ids.push_key(push("latest", event_id="harbor:x")) == ids.push_key(push("v1"))


def test_push_key_without_digest_is_one_push_per_event() -> None:
    first = push("v1", digest="", event_id="dockerhub:aaa")
    assert ids.push_key(first) == "registry.example.com/team/app:v1#dockerhub:aaa"
    assert ids.push_key(push("v1", digest="", event_id="dockerhub:bbb")) != ids.push_key(first)


def test_kv_key_is_valid_for_nats_kv_and_deterministic() -> None:
    key = ids.kv_key("registry.example.com/team/app:v1#dockerhub:aaa")
    assert re.fullmatch(r"[-/_=.a-zA-Z0-9]+", key)
    assert key == ids.kv_key("registry.example.com/team/app:v1#dockerhub:aaa")
    assert key != ids.kv_key("registry.example.com/team/app:v2#dockerhub:aaa")


def test_run_id_is_deterministic_per_push_and_pipeline_and_sorts_by_time() -> None:
    run = ids.run_id(1_715_678_523_000, "01hxpushid", "web")
    assert run == ids.run_id(1_715_678_523_000, "01hxpushid", "web")
    assert run != ids.run_id(1_715_678_523_000, "01hxpushid", "worker")
    assert run != ids.run_id(1_715_678_523_000, "01hxotherpush", "web")
    assert ids.run_id(1_715_678_524_000, "01hxotherpush", "web") > run
    assert re.fullmatch(r"[0-9a-z]{26}", run)
    assert ids.run_name("web", run) == f"pipelines/web/runs/{run}"
    assert ids.queued_event_id(run) == f"{run}:queued"

"""Deterministic identities of pushes, runs and bus messages (see the interface notes).

- push key: `registry/repository@digest` when the digest is known (the same image under
  several tags is one push), else `registry/repository:tag#event_id` (one push per event);
- the pushes KV bucket maps a push key to a push id (first writer wins), so
- run id = derived_id(push time, push id, pipeline id): the same for every event and
  every redelivery of the same push, per pipeline, and still time-sortable;
- DeployRequested message id = the run name; the QUEUED RunEvent's id = `{run}:queued`.
"""

from __future__ import annotations

import hashlib

from conveyor.names import RunName, derived_id
from conveyor.v1 import bus_pb2


def push_key(push: bus_pb2.ImagePushed) -> str:
    if push.digest:
        return f"{push.registry}/{push.repository}@{push.digest}"
    return f"{push.registry}/{push.repository}:{push.tag}#{push.event_id}"


def kv_key(key: str) -> str:
    """KV keys allow only `[-/_=.a-zA-Z0-9]`: the push key's hash stands for it."""
    return "push." + hashlib.sha256(key.encode()).hexdigest()


def run_id(push_time_ms: int, push_id: str, pipeline_id: str) -> str:
    return derived_id(push_time_ms, push_id, pipeline_id)


def run_name(pipeline_id: str, run: str) -> str:
    return str(RunName(pipeline_id, run))


def queued_event_id(run: str) -> str:
    return f"{run}:queued"

"""The per-workload leases on a real NATS KV (acquire, renew, expiry, the fence that stops a PATCH), and the
shared newest-applied entries that keep an older request from overwriting a newer one across replicas."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from nats.aio.client import Client as NATS

from conveyor.retry import RetryPolicy
from conveyor.v1 import bus_pb2, run_pb2
from conveyor_deployer.adapters.leases import BUCKET, KvAppliedOrders, KvLeases, lease_key
from conveyor_deployer.usecases.deploy import DeployRunner
from conveyor_deployer.usecases.ports import LeaseLost
from conveyor_deployer.usecases.requests import DeployRequest, parse_deploy_request
from tests.integration.deployer.conftest import Stack
from tests.support.kube import deploy_requested, image_of, patch_bodies

WORKLOAD = "sandbox/demo/Deployment/web"


async def test_only_one_holder_until_it_releases(nc: NATS) -> None:
    leases = await KvLeases.open(nc.jetstream(), ttl=5.0, replicas=1)
    first = await leases.acquire(WORKLOAD, "a")
    assert first is not None
    assert await leases.acquire(WORKLOAD, "b") is None
    assert await leases.acquire("sandbox/demo/Deployment/api", "b") is not None  # other workloads are free
    await first.release()
    second = await leases.acquire(WORKLOAD, "b")
    assert second is not None and second.revision > first.revision
    entry = await (await nc.jetstream().key_value(BUCKET)).get(lease_key(WORKLOAD))
    assert entry.value == b"b"


async def test_renewing_keeps_the_lease_past_its_ttl_and_advances_the_revision(nc: NATS) -> None:
    leases = await KvLeases.open(nc.jetstream(), ttl=1.0, replicas=1)
    lease = await leases.acquire(WORKLOAD, "a")
    assert lease is not None
    revisions = [lease.revision]
    for _ in range(6):  # 1.8 s, well past the 1 s TTL
        await asyncio.sleep(0.3)
        await lease.renew()
        revisions.append(lease.revision)
    assert revisions == sorted(set(revisions))
    assert await leases.acquire(WORKLOAD, "b") is None


async def test_an_unrenewed_lease_expires_and_its_holder_is_fenced_off(nc: NATS) -> None:
    leases = await KvLeases.open(nc.jetstream(), ttl=1.0, replicas=1)
    stale = await leases.acquire(WORKLOAD, "a")
    assert stale is not None
    taken = None
    for _ in range(40):  # expiry within about the TTL
        await asyncio.sleep(0.1)
        taken = await leases.acquire(WORKLOAD, "b")
        if taken is not None:
            break
    assert taken is not None
    with pytest.raises(LeaseLost):
        await stale.renew()
    await stale.release()  # a stale release leaves the new holder's entry alone
    await taken.renew()
    assert await leases.acquire(WORKLOAD, "c") is None


async def test_concurrent_renewals_of_one_lease_do_not_fence_its_holder(nc: NATS) -> None:
    leases = await KvLeases.open(nc.jetstream(), ttl=5.0, replicas=1)
    lease = await leases.acquire(WORKLOAD, "a")
    assert lease is not None
    await asyncio.gather(*(lease.renew() for _ in range(10)))  # the renewal loop and the fence at once


async def test_the_bucket_keeps_the_ttl_it_was_created_with(nc: NATS) -> None:
    first = await KvLeases.open(nc.jetstream(), ttl=3.0, replicas=1)
    second = await KvLeases.open(nc.jetstream(), ttl=9.0, replicas=1)
    assert first.renew_interval == second.renew_interval == pytest.approx(1.0)


async def test_a_replica_that_lost_its_lease_does_not_patch(nc: NATS, stack: Stack) -> None:
    leases = await KvLeases.open(nc.jetstream(), ttl=1.0, replicas=1)
    lease = await leases.acquire(WORKLOAD, "a")
    assert lease is not None
    await asyncio.sleep(1.5)
    assert await leases.acquire(WORKLOAD, "b") is not None  # expired, and taken by another replica
    runner = DeployRunner(
        stack.api, stack.sink, ["sandbox"], retry=RetryPolicy(initial=0.01, maximum=0.05, max_attempts=3)
    )
    message = deploy_requested(image="registry.example.com/demo/web:9.9.9")
    request = parse_deploy_request(message, default_rollout_timeout=30.0, now=dt.datetime.now(dt.UTC))

    with pytest.raises(LeaseLost):
        await runner.run(request, 1, fence=lease.renew)

    assert patch_bodies(stack.sandbox, "Deployment", "demo", "web") == []
    assert image_of(await stack.kube.get("Deployment", "demo", "web"), "app") == "registry.example.com/demo/web:1.0.0"
    assert stack.sink.terminal(message.run) == []  # no result: the request goes back for the lease holder
    assert not any(e.state == run_pb2.Run.SUCCEEDED for e in stack.sink.events)


def _runner(stack: Stack, shared: KvAppliedOrders | None) -> DeployRunner:
    # Each its own process-local history: as two replicas.
    return DeployRunner(
        stack.api,
        stack.sink,
        ["sandbox"],
        retry=RetryPolicy(initial=0.01, maximum=0.05, max_attempts=3),
        poll_interval=0.05,
        shared=shared,
    )


async def test_an_older_request_on_another_replica_never_overwrites_a_newer_one_that_needed_no_patch(
    nc: NATS, stack: Stack
) -> None:
    shared = await KvAppliedOrders.open(nc.jetstream(), replicas=1)
    base = dt.datetime.now(dt.UTC)
    older = deploy_requested(image="registry.example.com/demo/web:2.0.0", requested_at=base)
    newer = deploy_requested(  # what the sample runs already: no PATCH, so no deploy record on the workload
        image="registry.example.com/demo/web:1.0.0", requested_at=base + dt.timedelta(seconds=1)
    )

    done = await _runner(stack, shared).run(_parsed(newer), 1)
    late = await _runner(stack, shared).run(_parsed(older), 1)

    assert done.state == run_pb2.Run.SUCCEEDED and late.state == run_pb2.Run.SUPERSEDED, late
    assert patch_bodies(stack.sandbox, "Deployment", "demo", "web") == []
    assert image_of(await stack.kube.get("Deployment", "demo", "web"), "app") == "registry.example.com/demo/web:1.0.0"


async def test_the_shared_applied_entry_keeps_the_newest_request(nc: NATS) -> None:
    shared = await KvAppliedOrders.open(nc.jetstream(), replicas=1)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    slot = "sandbox/demo/Deployment/web/app"
    assert await shared.latest(slot) is None
    newest = ((base + dt.timedelta(microseconds=1), "01b"), "pipelines/web/runs/01b", "r.io/web:2")
    await shared.note(slot, newest)
    await shared.note(slot, ((base, "01a"), "pipelines/web/runs/01a", "r.io/web:1"))  # older: ignored
    assert await shared.latest(slot) == newest
    assert await shared.latest(slot + "-other") is None


def _parsed(message: bus_pb2.DeployRequested) -> DeployRequest:
    return parse_deploy_request(message, default_rollout_timeout=30.0, now=dt.datetime.now(dt.UTC))

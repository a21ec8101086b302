"""The benchmark scenarios. Each returns a `ScenarioResult`; none asserts anything about speed.

Every request loop is bounded both in count and in time, and all traffic stays on loopback.
"""

from __future__ import annotations

import asyncio
import cProfile
import hashlib
import os
import random
import secrets
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import aiohttp
import grpc
from nats.aio.msg import Msg

from bench import fixtures
from bench.report import ScenarioResult, Target
from bench.sandbox import deployment
from bench.seed import seed_pipelines
from bench.stats import CpuMeter, LatencySummary, memory_kib, rate
from bench.system import BenchSystem
from conveyor import bus
from conveyor.v1 import bus_pb2, pipeline_pb2, pipeline_service_pb2, pipeline_service_pb2_grpc, run_pb2
from conveyor_trigger.domain.matching import Outcome, PipelineIndex
from tests.support.net import free_port, wait_port

TERMINAL = {run_pb2.Run.SUCCEEDED, run_pb2.Run.FAILED, run_pb2.Run.SUPERSEDED}

P99_TARGET = Target("<", 50.0)
INGEST_TARGET = Target(">=", 5000.0)
MATCH_TARGET = Target(">=", 50_000.0)
FANOUT_TARGET = Target("<", 5.0)
GET_TARGET = Target(">=", 3000.0)


@dataclass(frozen=True)
class Sizes:
    latency_pushes: int = 1000
    latency_workloads: int = 50
    latency_rate: float = 20.0  # pushes per second, open loop
    latency_timeout: float = 120.0
    ingest_seconds: float = 15.0
    ingest_max: int = 150_000
    ingest_clients: int = 64
    matching_pipelines: int = 10_000
    matching_seconds: float = 5.0
    matching_max_events: int = 2_000_000
    matching_bus_events: int = 20_000
    fanout: int = 1000
    fanout_timeout: float = 180.0
    config_pipelines: int = 100_000
    get_seconds: float = 10.0
    get_max: int = 200_000
    get_clients: int = 32
    list_requests_small: int = 200
    list_requests_large: int = 40
    rss_pipelines: int = 100_000


QUICK = Sizes(
    latency_pushes=100,
    latency_workloads=10,
    latency_rate=20.0,
    latency_timeout=60.0,
    ingest_seconds=3.0,
    ingest_max=20_000,
    ingest_clients=32,
    matching_pipelines=2_000,
    matching_seconds=1.0,
    matching_max_events=200_000,
    matching_bus_events=1_000,
    fanout=100,
    fanout_timeout=60.0,
    config_pipelines=5_000,
    get_seconds=2.0,
    get_max=20_000,
    get_clients=16,
    list_requests_small=50,
    list_requests_large=10,
    rss_pipelines=5_000,
)


@dataclass
class Context:
    """What the scenarios share: the running system, the sizes and what has been set up so far."""

    system: BenchSystem
    sizes: Sizes
    # Pipelines created through the API (ids), and how many seed pipelines are in the database.
    created: set[str] = field(default_factory=set)
    seeded: int = 0
    nonce: str = field(default_factory=lambda: secrets.token_hex(3))
    # In-process profiler for the scenario's own work (set with --profile).
    profiler: cProfile.Profile | None = None
    # (VmRSS KiB, pipelines cached) of a trigger measured earlier, for comparison.
    trigger_rss_baseline: tuple[int, int] | None = None

    @property
    def pipelines_total(self) -> int:
        return len(self.created) + self.seeded

    async def create_pipelines(
        self, pipelines: list[tuple[str, pipeline_pb2.Pipeline]], concurrency: int = 16
    ) -> float:
        """CreatePipeline for each (id, pipeline) not created yet; returns creates per second."""
        todo = [(pid, p) for pid, p in pipelines if pid not in self.created]
        if not todo:
            return 0.0
        began = time.monotonic()
        async with grpc.aio.insecure_channel(self.system.address("config")) as channel:
            stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
            queue = list(reversed(todo))

            async def worker() -> None:
                while queue:
                    pipeline_id, pipeline = queue.pop()
                    request = pipeline_service_pb2.CreatePipelineRequest(pipeline=pipeline, pipeline_id=pipeline_id)
                    try:
                        await stub.CreatePipeline(request, timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                            raise
                    self.created.add(pipeline_id)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return rate(len(todo), time.monotonic() - began)

    async def seed_to(self, count: int) -> float:
        """Bulk-load seed pipelines until `count` are in the database; returns seconds spent."""
        if count <= self.seeded:
            return 0.0
        seconds = await seed_pipelines(self.system.database_url, self.seeded, count)
        self.seeded = count
        return seconds

    def cpu(self) -> CpuMeter:
        meter = CpuMeter(self.system.pids())
        meter.start(time.monotonic())
        return meter


def _cpu_note(meter: CpuMeter) -> str:
    return f"CPU while measuring (share of one core; the machine has {_cores()}): {meter.describe()}"


def _cores() -> str:
    count = os.cpu_count() or 0
    return f"{count} core{'s' if count != 1 else ''}"


def _headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


class BusWatcher:
    """Core-NATS subscriptions timing DeployRequested and terminal RunEvents as they are published."""

    def __init__(self) -> None:
        self.requested: dict[str, float] = {}  # image -> first DeployRequested time
        self.requested_runs: dict[str, float] = {}  # run -> time
        self.terminal: dict[str, tuple[float, int]] = {}  # run -> (time, state)
        self._subs: list[object] = []

    async def start(self, system: BenchSystem) -> None:
        assert system.nc is not None
        self._subs.append(await system.nc.subscribe(bus.DEPLOY_REQUESTED_SUBJECT, cb=self._on_requested))
        self._subs.append(await system.nc.subscribe(bus.RUN_EVENTS_SUBJECT, cb=self._on_event))

    async def stop(self) -> None:
        for sub in self._subs:
            await sub.unsubscribe()  # type: ignore[attr-defined]
        self._subs.clear()

    async def _on_requested(self, msg: Msg) -> None:
        now = time.monotonic()
        request = bus.decode(bus_pb2.DeployRequested, msg.data)
        self.requested.setdefault(request.image, now)
        self.requested_runs.setdefault(request.run, now)

    async def _on_event(self, msg: Msg) -> None:
        now = time.monotonic()
        event = bus.decode(bus_pb2.RunEvent, msg.data)
        if event.state in TERMINAL:
            self.terminal.setdefault(event.run, (now, event.state))


async def _until(check: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(interval)
    return check()


# ---------------------------------------------------------------------------------------- latency


async def latency(ctx: Context) -> ScenarioResult:
    sizes, system = ctx.sizes, ctx.system
    result = ScenarioResult("latency", "webhook received -> PATCH sent to the Kubernetes API")
    await system.ensure("trigger", "deployer")
    assert system.sandbox is not None
    workloads = sizes.latency_workloads
    repositories = [f"bench/lat-{i:04d}" for i in range(workloads)]
    for i in range(workloads):
        await system.sandbox.apply(
            fixtures_deployment(fixtures.latency_id(i), fixtures.image(repositories[i], "initial"))
        )
    await ctx.create_pipelines(
        [
            (fixtures.latency_id(i), fixtures.deploy_pipeline(f"latency {i}", repositories[i], fixtures.latency_id(i)))
            for i in range(workloads)
        ]
    )
    await system.wait_trigger_pipelines(ctx.pipelines_total)
    await system.quiesce()

    watcher = BusWatcher()
    await watcher.start(system)
    sends: dict[str, float] = {}
    acks: list[float] = []
    statuses: dict[int, int] = {}
    url = f"{system.webhook_url}/webhooks/harbor"
    headers = _headers(system.token)
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def push(k: int, label: str, record: bool) -> None:
            repository = repositories[k % workloads]
            tag = f"{label}-{ctx.nonce}-{k}"
            body = fixtures.harbor_push(repository, tag)
            sent = time.monotonic()
            if record:
                sends[fixtures.image(repository, tag)] = sent
            async with session.post(url, data=body, headers=headers) as reply:
                await reply.read()
            if record:
                acks.append(time.monotonic() - sent)
                statuses[reply.status] = statuses.get(reply.status, 0) + 1

        # Warm-up (not measured): one push per workload, so every connection and code path is hot.
        await asyncio.gather(*(push(k, "warm", False) for k in range(workloads)))
        await _until(lambda: len(system.sandbox.emulator.patches) >= workloads, 30)  # type: ignore[union-attr]
        await system.quiesce()
        system.sandbox.take_patches()

        meter = ctx.cpu()
        interval = 1.0 / sizes.latency_rate
        began = time.monotonic()
        tasks = []
        for k in range(sizes.latency_pushes):
            delay = began + k * interval - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(push(k, "lat", True)))
        await asyncio.gather(*tasks)
        sent_seconds = time.monotonic() - began
        arrivals: dict[str, float] = {}

        def all_patched() -> bool:
            for arrival in system.sandbox.emulator.patches:  # type: ignore[union-attr]
                for image in arrival.images():
                    arrivals.setdefault(image, arrival.arrived)
            system.sandbox.emulator.patches.clear()  # type: ignore[union-attr]
            return all(image in arrivals for image in sends)

        await _until(all_patched, sizes.latency_timeout, interval=0.05)
        meter.stop(time.monotonic())
    await watcher.stop()

    latencies = [arrivals[image] - sent for image, sent in sends.items() if image in arrivals]
    to_request = [watcher.requested[image] - sent for image, sent in sends.items() if image in watcher.requested]
    request_to_patch = [
        arrivals[image] - watcher.requested[image]
        for image in sends
        if image in arrivals and image in watcher.requested
    ]
    missing = len(sends) - len(latencies)
    if latencies:
        summary = LatencySummary.of_seconds(latencies)
        result.add("webhook -> PATCH p50", summary.p50, "ms")
        result.add("webhook -> PATCH p95", summary.p95, "ms")
        result.add("webhook -> PATCH p99", summary.p99, "ms", P99_TARGET)
        result.add("webhook -> PATCH max", summary.max, "ms")
    if to_request:
        part = LatencySummary.of_seconds(to_request)
        result.add("  of which webhook -> DeployRequested p50", part.p50, "ms", detail=f"p99 {part.p99:.1f}")
    if request_to_patch:
        part = LatencySummary.of_seconds(request_to_patch)
        result.add("  of which DeployRequested -> PATCH p50", part.p50, "ms", detail=f"p99 {part.p99:.1f}")
    if acks:
        ack = LatencySummary.of_seconds(acks)
        result.add("webhook answered 200 (stored) p50", ack.p50, "ms", detail=f"p99 {ack.p99:.1f}")
    result.conditions += [
        f"{len(sends)} Harbor push webhooks sent open-loop at {sizes.latency_rate:g}/s "
        f"(took {sent_seconds:.1f} s) round-robin over {workloads} pipelines, each watching its own repository and "
        "deploying to its own Deployment; verify_rollout off (the run ends right after the PATCH); "
        + _deployer_settings(system),
        "latency = PATCH arrival at the sandbox API (timestamped on entry, in this process) minus the client's "
        "timestamp just before sending the webhook POST (same CLOCK_MONOTONIC); includes HTTP receive, JetStream "
        "store, matcher, KV claim, RunEvent+DeployRequested publish, deployer fetch, 3 RunEvents, GET and PATCH",
        f"HTTP statuses: {statuses}; pushes without a PATCH within {sizes.latency_timeout:.0f} s: {missing}",
        _cpu_note(meter),
    ]
    return result


def _deployer_settings(system: BenchSystem) -> str:
    runs = system.overrides.get("CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS", "16 (default)")
    kube = system.overrides.get("CONVEYOR_DEPLOYER_KUBE_CONCURRENCY", "8 (default)")
    return f"CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS={runs}, CONVEYOR_DEPLOYER_KUBE_CONCURRENCY={kube}"


def fixtures_deployment(name: str, image: str) -> dict[str, object]:
    return deployment(fixtures.NAMESPACE, name, image, fixtures.CONTAINER)


# ---------------------------------------------------------------------------------------- fan-out


async def fanout(ctx: Context) -> ScenarioResult:
    sizes, system = ctx.sizes, ctx.system
    n = sizes.fanout
    result = ScenarioResult("fanout", f"one push fanned out to {n:,} pipelines / workloads")
    await system.ensure("trigger", "deployer")
    assert system.sandbox is not None
    for i in range(n):
        await system.sandbox.apply(
            fixtures_deployment(fixtures.fanout_id(i), fixtures.image(fixtures.FANOUT_REPOSITORY, "initial"))
        )
    creates_per_second = await ctx.create_pipelines(
        [
            (
                fixtures.fanout_id(i),
                fixtures.deploy_pipeline(f"fan-out {i}", fixtures.FANOUT_REPOSITORY, fixtures.fanout_id(i)),
            )
            for i in range(n)
        ]
    )
    await system.wait_trigger_pipelines(ctx.pipelines_total)
    await system.quiesce()
    system.sandbox.take_patches()

    watcher = BusWatcher()
    await watcher.start(system)
    tag = f"fan-{ctx.nonce}"
    image = fixtures.image(fixtures.FANOUT_REPOSITORY, tag)
    fan_runs = {f"pipelines/{fixtures.fanout_id(i)}" for i in range(n)}
    patched: dict[str, float] = {}
    meter = ctx.cpu()
    async with aiohttp.ClientSession() as session:
        began = time.monotonic()
        async with session.post(
            f"{system.webhook_url}/webhooks/harbor",
            data=fixtures.harbor_push(fixtures.FANOUT_REPOSITORY, tag),
            headers=_headers(system.token),
        ) as reply:
            await reply.read()
            status = reply.status

    def runs_of_push(times: dict[str, float]) -> list[float]:
        return [t for run, t in times.items() if run.rsplit("/runs/", 1)[0] in fan_runs]

    def done() -> bool:
        for arrival in system.sandbox.emulator.patches:  # type: ignore[union-attr]
            if image in arrival.images():
                patched.setdefault(arrival.path, arrival.arrived)
        system.sandbox.emulator.patches.clear()  # type: ignore[union-attr]
        finished = [run for run in watcher.terminal if run.rsplit("/runs/", 1)[0] in fan_runs]
        return len(finished) >= n and len(patched) >= n

    await _until(done, sizes.fanout_timeout, interval=0.02)
    meter.stop(time.monotonic())
    await watcher.stop()

    requested = runs_of_push(watcher.requested_runs)
    terminal = {run: v for run, v in watcher.terminal.items() if run.rsplit("/runs/", 1)[0] in fan_runs}
    succeeded = sum(1 for _, state in terminal.values() if state == run_pb2.Run.SUCCEEDED)
    complete = len(requested) >= n and len(patched) >= n and len(terminal) >= n
    result.add(
        f"push -> {n:,} DeployRequested stored",
        max(requested) - began if len(requested) >= n else None,
        "s",
        FANOUT_TARGET,
    )
    result.add(
        f"push -> {n:,} PATCHes sent", max(patched.values()) - began if len(patched) >= n else None, "s", FANOUT_TARGET
    )
    result.add(
        f"push -> {n:,} runs finished (terminal RunEvent)",
        max(t for t, _ in terminal.values()) - began if len(terminal) >= n else None,
        "s",
    )
    if requested:
        result.add("first DeployRequested after", min(requested) - began, "s")
    if patched:
        result.add("first PATCH after", min(patched.values()) - began, "s")
    result.conditions += [
        f"{n:,} pipelines watching {fixtures.FANOUT_REPOSITORY} (every tag), each deploying to its own Deployment "
        f"(created with CreatePipeline at {creates_per_second:,.0f}/s); one Harbor push webhook (HTTP {status}); "
        f"verify_rollout off; {_deployer_settings(system)}",
        "times are from the client sending the webhook to the last DeployRequested published on the bus "
        "(seen by a core-NATS subscriber), the last PATCH reaching the sandbox API, the last terminal RunEvent",
        f"seen: {len(requested)} DeployRequested, {len(patched)} PATCHes, {len(terminal)} terminal runs "
        f"({succeeded} SUCCEEDED){'' if complete else f' -- INCOMPLETE after {sizes.fanout_timeout:.0f} s'}",
        _cpu_note(meter),
    ]
    return result


# ---------------------------------------------------------------------------------------- ingest


@dataclass
class LoadResult:
    ok: int = 0  # 2xx answers to requests sent and answered inside the measured window
    window: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    meter: CpuMeter | None = None


async def http_load(
    url: str,
    headers: dict[str, str],
    body: Callable[[int], bytes],
    *,
    clients: int,
    seconds: float,
    max_requests: int,
    warmup: float,
    cpu: Callable[[], CpuMeter] | None = None,
) -> LoadResult:
    """`clients` concurrent keep-alive clients POSTing `body(k)` for `warmup` + `seconds`, at most
    `max_requests` in all; counts the 2xx answers to requests sent and answered inside the window."""
    result = LoadResult()
    counter = 0
    began = time.monotonic()
    measure_from = began + warmup
    stop_at = measure_from + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal counter
        while time.monotonic() < stop_at and counter < max_requests:
            k = counter
            counter += 1
            sent = time.monotonic()
            try:
                async with session.post(url, data=body(k), headers=headers) as reply:
                    await reply.read()
                    status = reply.status
            except aiohttp.ClientError as exc:
                result.errors[type(exc).__name__] = result.errors.get(type(exc).__name__, 0) + 1
                continue
            done = time.monotonic()
            if not 200 <= status < 300:
                result.errors[f"HTTP {status}"] = result.errors.get(f"HTTP {status}", 0) + 1
            elif measure_from <= sent and done <= stop_at:
                result.ok += 1
                result.latencies.append(done - sent)

    async def start_meter() -> CpuMeter | None:
        await asyncio.sleep(warmup)
        return cpu() if cpu is not None else None

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        meter_task = asyncio.create_task(start_meter())
        await asyncio.gather(*(client(session) for _ in range(clients)))
        result.meter = await meter_task
        if result.meter is not None:
            result.meter.stop(time.monotonic())
    result.window = max(0.0, min(time.monotonic(), stop_at) - measure_from)
    return result


async def ingest(ctx: Context) -> ScenarioResult:
    sizes, system = ctx.sizes, ctx.system
    result = ScenarioResult("ingest", "sustained webhook ingest (HTTP 2xx = stored in JetStream)")
    await system.ensure("trigger")
    await system.quiesce()
    zero_digest = b"0" * 64
    template = fixtures.harbor_push(fixtures.UNWATCHED_REPOSITORY, "@@TAG@@", "sha256:" + zero_digest.decode())

    def body(k: int) -> bytes:
        # Distinct tag and digest per request (a distinct event), without building JSON each time.
        tag = f"i-{ctx.nonce}-{k}".encode()
        return template.replace(b"@@TAG@@", tag).replace(zero_digest, hashlib.sha256(tag).hexdigest().encode())

    warmup = min(2.0, sizes.ingest_seconds / 3)
    load = await http_load(
        f"{system.webhook_url}/webhooks/harbor",
        _headers(system.token),
        body,
        clients=sizes.ingest_clients,
        seconds=sizes.ingest_seconds,
        max_requests=sizes.ingest_max,
        warmup=warmup,
        cpu=ctx.cpu,
    )
    matcher_backlog = await system.consumer_state("trigger")
    drained = await system.quiesce(timeout=300)
    reference = await _reference_rate(sizes, body)

    result.add("webhooks stored per second", rate(load.ok, load.window), "/s", INGEST_TARGET)
    if load.latencies:
        summary = LatencySummary.of_seconds(load.latencies)
        result.add("webhook response time p50 under load", summary.p50, "ms", detail=f"p99 {summary.p99:.1f}")
    result.add(
        "reference: do-nothing aiohttp endpoint, same clients",
        rate(reference.ok, reference.window),
        "/s",
        note="bench.reference_server (read the body, answer a fixed JSON) in its own process: the ceiling of the "
        "HTTP stack and of this client on this machine, before any of the trigger's work",
    )
    result.conditions += [
        f"{sizes.ingest_clients} concurrent aiohttp clients (one keep-alive connection each) in the bench driver "
        f"posting distinct Harbor push webhooks (one push each, repository nobody watches) for "
        f"{sizes.ingest_seconds:g} s after {warmup:g} s of warm-up, at most {sizes.ingest_max:,} requests; "
        f"{load.ok:,} answered 2xx in the window of {load.window:.1f} s; failures: {load.errors or 'none'}",
        "the trigger's matcher runs as in production (each stored event is matched: no pipeline watches it); "
        f"its backlog at the end: {matcher_backlog[1] if matcher_backlog else '?'} events, drained in {drained:.1f} s",
    ]
    if load.meter is not None:
        result.conditions.append(_cpu_note(load.meter))
    return result


async def _reference_rate(sizes: Sizes, body: Callable[[int], bytes]) -> LoadResult:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.reference_server",
        str(port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.to_thread(wait_port, port)
        seconds = min(5.0, sizes.ingest_seconds)
        return await http_load(
            f"http://127.0.0.1:{port}/webhooks/harbor",
            {"Content-Type": "application/json"},
            body,
            clients=sizes.ingest_clients,
            seconds=seconds,
            max_requests=sizes.ingest_max,
            warmup=min(1.0, seconds / 3),
        )
    finally:
        process.terminate()
        await process.wait()


# ---------------------------------------------------------------------------------------- matching

_PUSH_TAGS = ("release-1", "v1.2.3", "v2.0.0-rc1", "main-abcdef1", "prod-42", "feature-x", "build-123", "1.0-hotfix")


def _matching_pushes(pipelines: int, count: int, seed: int = 7) -> list[bus_pb2.ImagePushed]:
    randomiser = random.Random(seed)
    pushes = []
    for k in range(count):
        if randomiser.random() < 0.9:
            repository = fixtures.seed_repository(randomiser.randrange(pipelines))
        else:
            repository = fixtures.UNWATCHED_REPOSITORY
        push = bus_pb2.ImagePushed(
            event_id=f"m{k}",
            registry=fixtures.REGISTRY,
            repository=repository,
            tag=randomiser.choice(_PUSH_TAGS),
            digest=fixtures.digest_of(str(k)),
        )
        pushes.append(push)
    return pushes


async def matching(ctx: Context) -> ScenarioResult:
    sizes, system = ctx.sizes, ctx.system
    n = sizes.matching_pipelines
    result = ScenarioResult("matching", f"matching pushes against {n:,} pipelines")

    # 1. The trigger's pure matcher, in this process.
    now_us = int(time.time() * 1_000_000)
    built = time.monotonic()
    index, rejected = PipelineIndex.build(fixtures.seed_pipeline(i, now_us) for i in range(n))
    build_seconds = time.monotonic() - built
    assert not rejected, rejected[:3]
    pushes = _matching_pushes(n, 10_000)
    # One untimed pass: warms the caches and tells how many pushes match something and the decisions per pass.
    with_match = decisions_per_pass = 0
    for push in pushes:
        found = index.match(push)
        decisions_per_pass += len(found)
        with_match += any(decision.outcome == Outcome.MATCHED for decision in found)
    events = passes = 0
    profiler = ctx.profiler
    if profiler is not None:
        profiler.enable()
    match = index.match
    began = time.monotonic()
    deadline = began + sizes.matching_seconds
    while events < sizes.matching_max_events and time.monotonic() < deadline:
        for push in pushes:
            match(push)
        events += len(pushes)
        passes += 1
    elapsed = time.monotonic() - began
    if profiler is not None:
        profiler.disable()
    decisions = decisions_per_pass * passes
    result.add("pure matcher: events matched per second", rate(events, elapsed), "/s", MATCH_TARGET)
    result.add("pure matcher: pipeline decisions per second", rate(decisions, elapsed), "/s")
    result.conditions.append(
        f"pure matcher = PipelineIndex.match() of the trigger's domain in the bench process (one thread, no I/O): "
        f"{events:,} pushes in {elapsed:.1f} s against an index of {n:,} pipelines (10 per repository, EXACT and "
        f"RE2 tag filters, built in {build_seconds:.2f} s); 90% of pushes hit a watched repository, "
        f"{with_match / len(pushes) * 100:.0f}% match at least one pipeline"
    )

    # 2. The running trigger: events consumed from JetStream, matched and acked per second.
    await system.ensure("trigger")
    await system.quiesce()
    await ctx.seed_to(max(ctx.seeded, n))
    await system.stop_service("trigger")
    state = await system.consumer_state("trigger")
    base = state[0] if state else 0
    count = sizes.matching_bus_events
    randomiser = random.Random(11)
    acks = []
    for k in range(count):
        repository = fixtures.seed_repository(randomiser.randrange(n))
        push = fixtures.image_pushed(repository, f"build-{k}", f"bench-match-{ctx.nonce}-{k}")
        acks.append(bus.publish(system.js, bus.IMAGE_PUSHED_SUBJECT, push, push.event_id))
        if len(acks) >= 500:
            await asyncio.gather(*acks)
            acks.clear()
    await asyncio.gather(*acks)
    stream = await system.js.stream_info(bus.REGISTRY_EVENTS_STREAM)
    last = stream.state.last_seq
    # Follow the consumer's ack floor from before the trigger starts: (time, floor) every 20 ms.
    timeline: list[tuple[float, int]] = []
    low_mark, high_mark = base + count // 10, base + count - count // 10
    meter: CpuMeter | None = None

    async def follow() -> None:
        nonlocal meter
        while True:
            state = await system.consumer_state("trigger")
            now = time.monotonic()
            floor = state[0] if state else base
            timeline.append((now, floor))
            if meter is None and floor >= low_mark:
                meter = ctx.cpu()
            if floor >= last:
                if meter is not None:
                    meter.stop(now)
                return
            await asyncio.sleep(0.02)

    follower = asyncio.create_task(follow())
    started = time.monotonic()
    await system.start_service("trigger")
    await system.wait_trigger_pipelines(ctx.pipelines_total)
    load_seconds = time.monotonic() - started
    try:
        await asyncio.wait_for(asyncio.shield(follower), 300)
        finished = True
    except TimeoutError:
        follower.cancel()
        finished = False
    value = _steady_rate(timeline, low_mark, high_mark)
    if system.running("trigger"):
        ctx.trigger_rss_baseline = (memory_kib(system.services["trigger"].pid), ctx.pipelines_total)
    result.add("running trigger: events matched per second", value, "/s", MATCH_TARGET)
    result.add("running trigger: pipeline decisions per second", value * 10 if value else None, "/s")
    result.conditions.append(
        f"running trigger = {count:,} ImagePushed events published to JetStream while the trigger was stopped; "
        f"then the trigger started (SERVING and {ctx.pipelines_total:,} pipelines loaded from config in "
        f"{load_seconds:.1f} s) and its matcher consumed the backlog; figure = progress of the consumer's ack floor "
        "over time. Every event hits a repository with 10 pipelines and matches none (10 TAG_MISMATCH decisions, "
        "no runs): fetch + decode + match + events log + log line + ack, per event"
        + f" (measured between 10% and 90% of the backlog){'' if finished else ' -- did NOT finish within 300 s'}"
    )
    if meter is not None and meter.used:
        result.conditions.append(_cpu_note(meter))
    return result


# ---------------------------------------------------------------------------------------- config


async def config(ctx: Context) -> ScenarioResult:
    sizes, system = ctx.sizes, ctx.system
    n = sizes.config_pipelines
    result = ScenarioResult("config", f"config service with {n:,} pipelines")
    await system.ensure("config")
    # A running trigger re-loads every pipeline each minute: stop it so it does not load config meanwhile.
    trigger_was_running = system.running("trigger")
    await system.stop_service("trigger")
    await system.quiesce()
    seed_seconds = await ctx.seed_to(max(ctx.seeded, n))
    ids = [fixtures.seed_id(i) for i in range(ctx.seeded)]
    channels = [grpc.aio.insecure_channel(system.address("config")) for _ in range(4)]
    try:
        stubs = [pipeline_service_pb2_grpc.PipelineServiceStub(channel) for channel in channels]
        stub = stubs[0]
        # Warm-up: connections, first queries.
        for pipeline_id in ids[:50]:
            await stub.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name=f"pipelines/{pipeline_id}"))

        # GetPipeline rate: concurrent clients, uniformly random ids.
        randomiser = random.Random(5)
        done = 0
        errors: dict[str, int] = {}
        latencies: list[float] = []
        stop_at = time.monotonic() + sizes.get_seconds

        async def getter(worker: int) -> None:
            nonlocal done
            client = stubs[worker % len(stubs)]
            while time.monotonic() < stop_at and done < sizes.get_max:
                done += 1
                name = f"pipelines/{ids[randomiser.randrange(len(ids))]}"
                sent = time.monotonic()
                try:
                    await client.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name=name), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
                    continue
                latencies.append(time.monotonic() - sent)

        meter = ctx.cpu()
        began = time.monotonic()
        await asyncio.gather(*(getter(w) for w in range(sizes.get_clients)))
        elapsed = time.monotonic() - began
        meter.stop(time.monotonic())
        result.add("GetPipeline per second", rate(len(latencies), elapsed), "/s", GET_TARGET)
        if latencies:
            summary = LatencySummary.of_seconds(latencies)
            result.add("GetPipeline latency p50 under that load", summary.p50, "ms", detail=f"p99 {summary.p99:.1f}")
        result.conditions.append(
            f"GetPipeline: {sizes.get_clients} concurrent grpc.aio clients on 4 channels in the bench driver, "
            f"uniformly random names among {len(ids):,} for {elapsed:.1f} s ({len(latencies):,} answers, errors: "
            f"{errors or 'none'}); config's GetPipeline cache (5 s TTL) is on as by default"
        )
        result.conditions.append(_cpu_note(meter))

        # ListPipelines: walk everything (what a trigger re-sync costs), collecting page tokens.
        walk_began = time.monotonic()
        tokens_all = await _walk(stub, "", 1000)
        walk_seconds = time.monotonic() - walk_began
        namespace_filter = 'target.namespace = "ns-3"'
        tokens_filtered = await _walk(stub, namespace_filter, 1000)
        result.add(f"ListPipelines full walk of {ctx.pipelines_total:,} (pages of 1000)", walk_seconds, "s")

        async def list_latency(filter_text: str, tokens: list[str], page_size: int, count: int) -> LatencySummary:
            picker = random.Random(page_size)
            samples = []
            for _ in range(count):
                token = picker.choice(tokens)
                sent = time.monotonic()
                reply = await stub.ListPipelines(
                    pipeline_service_pb2.ListPipelinesRequest(
                        page_size=page_size, page_token=token, filter=filter_text
                    ),
                    timeout=30,
                )
                samples.append(time.monotonic() - sent)
                # Pages are full, except when fewer pipelines match than a page holds (--quick sizes).
                if len(reply.pipelines) < min(page_size, reply.total_size or page_size):
                    raise RuntimeError(f"a page of {page_size} held {len(reply.pipelines)} pipelines")
            return LatencySummary.of_seconds(samples)

        # Tokens whose page is full: every token but the one of the last page.
        full_all = tokens_all[:-1] or tokens_all
        full_filtered = tokens_filtered[:-1] or tokens_filtered
        for label, filter_text, tokens in (
            ("unfiltered", "", full_all),
            ("filtered", namespace_filter, full_filtered),
        ):
            for page_size, count in ((50, sizes.list_requests_small), (1000, sizes.list_requests_large)):
                summary = await list_latency(filter_text, tokens, page_size, count)
                result.add(
                    f"ListPipelines page of {page_size}, {label}: p50",
                    summary.p50,
                    "ms",
                    detail=f"p99 {summary.p99:.1f}",
                )
        result.conditions.append(
            "ListPipelines: one client, sequential requests at random positions (page tokens collected by a full "
            f"walk), {ctx.pipelines_total:,} pipelines; filtered = `{namespace_filter}` (10% of them)"
        )
    finally:
        for channel in channels:
            await channel.close()
    result.conditions.insert(
        0,
        f"database: {_db_label(system.database_url)}; {ctx.seeded:,} pipelines bulk-loaded straight into the "
        f"config schema (seed time so far {seed_seconds:.1f} s in this scenario), "
        f"plus {len(ctx.created):,} created with CreatePipeline; the trigger was "
        f"{'stopped for this scenario' if trigger_was_running else 'not running'} (its periodic full re-load "
        "would compete)",
    )
    return result


def _steady_rate(timeline: list[tuple[float, int]], low: int, high: int) -> float | None:
    """Rate at which a counter went from `low` to `high`, from (time, value) samples; None if it never did.

    Each crossing time is interpolated between the samples around it, so the poll interval barely matters.
    """

    def crossing(mark: int) -> float | None:
        previous: tuple[float, int] | None = None
        for when, value in timeline:
            if value >= mark:
                if previous is None or value == previous[1]:
                    return when
                t0, v0 = previous
                return t0 + (when - t0) * (mark - v0) / (value - v0)
            previous = (when, value)
        return None

    start, end = crossing(low), crossing(high)
    if start is None or end is None or end <= start or high <= low:
        return None
    return (high - low) / (end - start)


async def _walk(stub: pipeline_service_pb2_grpc.PipelineServiceStub, filter_text: str, page_size: int) -> list[str]:
    tokens = [""]
    token = ""
    for _ in range(10_000):
        reply = await stub.ListPipelines(
            pipeline_service_pb2.ListPipelinesRequest(page_size=page_size, page_token=token, filter=filter_text),
            timeout=60,
        )
        token = reply.next_page_token
        if not token:
            break
        tokens.append(token)
    return tokens


def _db_label(url: str) -> str:
    if url.startswith("sqlite"):
        return "SQLite (WAL) in the bench's temporary directory"
    return "PostgreSQL (" + url.rsplit("@", maxsplit=1)[-1] + "; its server processes are not in the CPU line)"


# ---------------------------------------------------------------------------------------- RSS


async def rss(ctx: Context) -> ScenarioResult:
    sizes, system = ctx.sizes, ctx.system
    n = sizes.rss_pipelines
    result = ScenarioResult("rss", f"trigger memory with {n:,} pipelines cached")
    await system.ensure("config")
    before = ctx.trigger_rss_baseline
    if system.running("trigger"):
        before = (memory_kib(system.services["trigger"].pid), ctx.pipelines_total)
    await ctx.seed_to(max(ctx.seeded, n))
    await system.stop_service("trigger")
    began = time.monotonic()
    service = await system.start_service("trigger")
    waited = await system.wait_trigger_pipelines(ctx.pipelines_total)
    loaded = time.monotonic() - began
    await asyncio.sleep(2.0)  # let the load's garbage be collected
    rss_kib = memory_kib(service.pid)
    peak_kib = memory_kib(service.pid, "VmHWM")
    result.add(f"trigger VmRSS, {ctx.pipelines_total:,} pipelines cached", rss_kib / 1024, "MB")
    result.add("trigger VmHWM (peak, during the load)", peak_kib / 1024, "MB")
    result.add(f"trigger start -> {ctx.pipelines_total:,} pipelines cached", loaded, "s")
    if before is not None:
        result.add(f"for comparison: trigger VmRSS, {before[1]:,} pipelines cached", before[0] / 1024, "MB")
    result.conditions.append(
        f"a fresh trigger process loading {ctx.pipelines_total:,} pipelines from config (ListPipelines pages of "
        f"1000; index ready {waited:.1f} s after it was SERVING); VmRSS / VmHWM read from /proc/PID/status 2 s "
        "after the matching index reported them all; MB = MiB"
    )
    return result


Scenario = Callable[[Context], Awaitable[ScenarioResult]]
SCENARIOS: dict[str, Scenario] = {
    "latency": latency,
    "fanout": fanout,
    "ingest": ingest,
    "matching": matching,
    "config": config,
    "rss": rss,
}
# Which service processes `--profile NAME` runs under cProfile ("driver" = the in-process part).
PROFILED: dict[str, tuple[str, ...]] = {
    "latency": ("trigger", "deployer", "config"),
    "fanout": ("trigger", "deployer", "config"),
    "ingest": ("trigger",),
    "matching": ("driver", "trigger"),
    "config": ("config",),
    "rss": ("trigger",),
}


def sizes_for(quick: bool) -> Sizes:
    return replace(QUICK) if quick else Sizes()

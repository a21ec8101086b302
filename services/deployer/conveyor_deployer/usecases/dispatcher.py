"""Which deploy request runs when: bounded concurrency, one run at a time per workload, supersede.

- Runs on different workloads proceed concurrently, at most `max_concurrent` at once.
- Runs on the same workload (cluster/namespace/kind/name) are strictly serialised, in arrival
  order: two patches to one pod template must not interleave their rollouts.
- A newer request (by `requested_at`, then run id) for the same container of a workload
  supersedes the queued older ones: they end as SUPERSEDED without touching the cluster. A
  request older than the one running or queued for that container is superseded on arrival,
  so an older image is never applied after a newer one. (Requests for *other* containers of
  the workload belong to other pipelines: they queue, they are not superseded.)
- Every held message gets an in-progress ack every `heartbeat_interval` until it is settled, so
  JetStream does not redeliver it while it waits or while its rollout is followed. It is acked
  only after its terminal RunEvent is stored; on failure it is nak'ed for redelivery.
- `shutdown(grace)`: queued requests are handed back (nak) at once; running ones get `grace`
  seconds to finish, then are cancelled and handed back; their redelivery resumes idempotently.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from conveyor import logs
from conveyor.v1 import run_pb2
from conveyor_deployer import metrics
from conveyor_deployer.usecases.deploy import RunResult
from conveyor_deployer.usecases.ports import Delivery
from conveyor_deployer.usecases.requests import DeployRequest

log = logging.getLogger(__name__)


class Executor(Protocol):
    async def run(self, request: DeployRequest, attempt: int) -> RunResult: ...

    async def supersede(self, request: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult: ...


@dataclass(eq=False)
class Job:
    request: DeployRequest
    delivery: Delivery
    heartbeat: asyncio.Task[None] | None = None


@dataclass(eq=False)
class Lane:
    """The requests of one workload: at most one running, the rest queued in arrival order."""

    pending: list[Job] = field(default_factory=list)
    running: Job | None = None
    task: asyncio.Task[RunResult] | None = None
    worker: asyncio.Task[None] | None = None


class Dispatcher:
    def __init__(
        self,
        executor: Executor,
        *,
        max_concurrent: int,
        heartbeat_interval: float,
        retry_delay: float = 2.0,
    ) -> None:
        self.executor = executor
        self.heartbeat_interval = heartbeat_interval
        self.retry_delay = retry_delay
        self._semaphore = asyncio.Semaphore(max_concurrent)
        self._lanes: dict[tuple[str, str, str, str], Lane] = {}
        self._held = 0
        self._closing = False
        self.settled = asyncio.Event()  # set whenever a held message is settled (room to fetch more)

    @property
    def held(self) -> int:
        """Messages received and not yet settled."""
        return self._held

    def _hold(self, job: Job) -> None:
        self._held += 1
        metrics.RUNS_HELD.set(self._held)
        job.heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(job))

    def _release(self, job: Job) -> None:
        self._held -= 1
        metrics.RUNS_HELD.set(self._held)
        if job.heartbeat is not None:
            job.heartbeat.cancel()
        self.settled.set()

    async def _heartbeat(self, job: Job) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                await job.delivery.in_progress()
            except Exception as exc:  # a missed heartbeat at worst means a redelivery
                log.debug("in-progress ack failed", extra={"run": job.request.run, "error": str(exc)})

    async def submit(self, request: DeployRequest, delivery: Delivery) -> None:
        """Take a request; it is settled (acked or nak'ed) later by the dispatcher."""
        if self._closing:
            await _settle(delivery.nak(0), request)
            return
        key = request.target.key
        lane = self._lanes.get(key) or Lane()
        for job in [*lane.pending, *([lane.running] if lane.running else [])]:
            if job.request.run == request.run:
                # A redelivery of a run we hold: the newest delivery settles it.
                job.delivery = delivery
                return
        for other in [*([lane.running] if lane.running else []), *lane.pending]:
            if other.request.slot == request.slot and other.request.order > request.order:
                await self._supersede(Job(request, delivery), other.request, held=False)
                return
        self._lanes[key] = lane
        job = Job(request, delivery)
        self._hold(job)
        # Queued older requests for the same container end now; `lane.pending` is final
        # before the first await so the worker never picks one of them.
        older = [queued for queued in lane.pending if queued.request.slot == request.slot]
        lane.pending = [queued for queued in lane.pending if queued not in older]
        lane.pending.append(job)
        if lane.worker is None:
            lane.worker = asyncio.get_running_loop().create_task(self._work(key, lane))
        for queued in older:
            await self._supersede(queued, request, held=True)

    async def _supersede(self, job: Job, newer: DeployRequest, *, held: bool) -> None:
        with logs.bind(pipeline=job.request.pipeline_id, run=job.request.run_id):
            log.info("run superseded", extra={"newer_run": newer.run})
            try:
                await self.executor.supersede(job.request, job.delivery.attempt, newer)
            except Exception:
                log.exception("could not report the superseded run; it will be redelivered")
                await _settle(job.delivery.nak(self.retry_delay), job.request)
            else:
                await _settle(job.delivery.ack(), job.request)
            finally:
                if held:
                    self._release(job)

    async def _work(self, key: tuple[str, str, str, str], lane: Lane) -> None:
        try:
            while True:
                async with self._semaphore:
                    if not lane.pending or self._closing:
                        return
                    job = lane.pending.pop(0)
                    lane.running = job
                    try:
                        await self._run(lane, job)
                    finally:
                        lane.running = None
                        lane.task = None
                        self._release(job)
        finally:
            lane.worker = None
            if self._lanes.get(key) is lane and not lane.pending:
                del self._lanes[key]
            elif lane.pending and not self._closing:
                lane.worker = asyncio.get_running_loop().create_task(self._work(key, lane))

    async def _run(self, lane: Lane, job: Job) -> None:
        request = job.request
        with logs.bind(pipeline=request.pipeline_id, run=request.run_id):
            lane.task = asyncio.get_running_loop().create_task(self.executor.run(request, job.delivery.attempt))
            metrics.RUNS_ACTIVE.inc()
            try:
                result = await asyncio.shield(lane.task)
            except asyncio.CancelledError:
                if lane.task.cancelled() or self._closing:
                    log.info("run interrupted by shutdown; handing it back for redelivery")
                    await _settle(job.delivery.nak(0), request)
                    return
                raise
            except Exception:
                log.exception("run failed unexpectedly; it will be redelivered")
                await _settle(job.delivery.nak(self.retry_delay), request)
                return
            finally:
                metrics.RUNS_ACTIVE.dec()
            log.info("run finished", extra={"state": run_pb2.Run.State.Name(result.state), "error": result.error})
            await _settle(job.delivery.ack(), request)

    async def shutdown(self, grace: float) -> None:
        """Hand back queued requests, give running ones `grace` seconds, then hand those back too."""
        self._closing = True
        for lane in list(self._lanes.values()):
            queued, lane.pending = lane.pending, []
            for job in queued:
                await _settle(job.delivery.nak(0), job.request)
                self._release(job)
        running = [lane.task for lane in self._lanes.values() if lane.task is not None]
        if running:
            log.info("waiting for in-flight runs", extra={"runs": len(running), "grace_seconds": grace})
            _done, unfinished = await asyncio.wait(running, timeout=grace)
            for task in unfinished:
                task.cancel()
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)


async def _settle(action: Awaitable[None], request: DeployRequest) -> None:
    try:
        await action
    except Exception as exc:
        # Unsettled messages come back after ack_wait; every step is idempotent.
        log.warning("could not settle the message", extra={"run": request.run, "error": str(exc)})

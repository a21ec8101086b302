"""Which deploy request runs when: bounded concurrency, one run at a time per workload, supersede.

- Runs on different workloads proceed concurrently, at most `max_concurrent` at once.
- Runs on the same workload (cluster/namespace/kind/name) are strictly serialised, in arrival
  order: two patches to one pod template must not interleave their rollouts.
- A newer request (by `requested_at` -- when it was accepted, not when it was matched -- then
  run id) for the same container of a workload supersedes the queued older ones: they end as
  SUPERSEDED without touching the cluster. A request older than the one running or queued for
  that container is superseded on arrival, so an older image is never applied after a newer
  one. (Requests for *other* containers of the workload belong to other pipelines: they queue,
  they are not superseded.)
- Every held message gets an in-progress ack every `heartbeat_interval` until it is settled, so
  JetStream does not redeliver it while it waits or while its rollout is followed. It is acked
  only after its terminal RunEvent is stored; on failure it is nak'ed for redelivery.
- Stopping comes in two steps, each bounded by the caller's stop plan: `drain(timeout)` hands
  queued requests back (nak) at once and gives running ones `timeout` seconds to finish;
  `hand_back()` cancels those still running and hands them back too. Their redelivery (to another
  replica, or after the restart) resumes idempotently. `shutdown(grace)` is both in a row.
- Across replicas (`leases` given): a run starts only once its replica holds the workload's lease,
  renewed while it runs and released after. Requests for a workload leased by another replica stay
  held here (in-progress acks, never worked on) and the lease is tried again every `lease_retry`
  seconds -- held, not nak'ed, so a long rollout elsewhere does not use up their deliveries. The run
  gets `lease.renew` as its fence, called right before every PATCH; a lost lease (renewal or fence
  failed) stops the run and hands its request back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Protocol

from conveyor import logs, tracing
from conveyor.v1 import run_pb2
from conveyor_deployer import metrics
from conveyor_deployer.usecases.deploy import RunResult
from conveyor_deployer.usecases.ports import Delivery, Fence, Lease, LeaseLost, Leases
from conveyor_deployer.usecases.requests import DeployRequest

log = logging.getLogger(__name__)


class Executor(Protocol):
    async def run(self, request: DeployRequest, attempt: int, fence: Fence | None = None) -> RunResult: ...

    async def supersede(self, request: DeployRequest, attempt: int, newer: DeployRequest) -> RunResult: ...


@dataclass(eq=False)
class Job:
    request: DeployRequest
    delivery: Delivery
    heartbeat: asyncio.Task[None] | None = None
    # The trace it arrived in (the consumer's span, current when the job is made): its run continues it.
    trace: tracing.Context | None = field(default_factory=tracing.current)


@dataclass(eq=False)
class Lane:
    """The requests of one workload: at most one running, the rest queued in arrival order."""

    pending: list[Job] = field(default_factory=list)
    running: Job | None = None
    task: asyncio.Task[RunResult] | None = None
    worker: asyncio.Task[None] | None = None
    lease_lost: bool = False


class Dispatcher:
    def __init__(
        self,
        executor: Executor,
        *,
        max_concurrent: int,
        heartbeat_interval: float,
        retry_delay: float = 2.0,
        leases: Leases | None = None,
        holder: str = "",
        lease_retry: float = 1.0,
    ) -> None:
        self.executor = executor
        self.leases = leases
        self.holder = holder
        self.lease_retry = lease_retry
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
        metrics.IN_FLIGHT.queued(job.request.run, job.request.rollout_timeout)
        job.heartbeat = asyncio.get_running_loop().create_task(self._heartbeat(job))

    def _release(self, job: Job) -> None:
        self._held -= 1
        metrics.RUNS_HELD.set(self._held)
        metrics.IN_FLIGHT.settled(job.request.run)
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
        with logs.bind(pipeline=job.request.pipeline_id, run=job.request.run), tracing.attached(job.trace):
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
                    lease = await self._acquire(key, lane.pending[0])
                    if lease is not None or self.leases is None:
                        job = lane.pending.pop(0)
                        lane.running = job
                        try:
                            await self._run_leased(lane, job, lease)
                        finally:
                            lane.running = None
                            lane.task = None
                            self._release(job)
                        continue
                # Another replica holds this workload: keep the requests (heartbeats go on) and try again.
                await asyncio.sleep(self.lease_retry)
        finally:
            lane.worker = None
            if self._lanes.get(key) is lane and not lane.pending:
                del self._lanes[key]
            elif lane.pending and not self._closing:
                lane.worker = asyncio.get_running_loop().create_task(self._work(key, lane))

    async def _acquire(self, key: tuple[str, str, str, str], job: Job) -> Lease | None:
        if self.leases is None:
            return None
        try:
            return await self.leases.acquire("/".join(key), f"{self.holder} {job.request.run}")
        except Exception as exc:  # NATS away: no lease, so no run; the requests wait here
            log.warning("could not take a workload lease", extra={"run": job.request.run, "error": str(exc)})
            return None

    async def _run_leased(self, lane: Lane, job: Job, lease: Lease | None) -> None:
        if lease is None:
            await self._run(lane, job, None)
            return
        lane.lease_lost = False
        renewing = asyncio.get_running_loop().create_task(self._renew(lane, lease))
        try:
            await self._run(lane, job, lease)
        finally:
            renewing.cancel()
            await lease.release()

    async def _renew(self, lane: Lane, lease: Lease) -> None:
        assert self.leases is not None
        while True:
            await asyncio.sleep(self.leases.renew_interval)
            try:
                await lease.renew()
            except LeaseLost:
                lane.lease_lost = True
                if lane.task is not None:
                    lane.task.cancel()
                return
            except Exception as exc:  # NATS away: try again; if it stays away the lease lapses and the fence holds
                log.warning("could not renew a workload lease", extra={"error": str(exc)})

    async def _run(self, lane: Lane, job: Job, lease: Lease | None) -> None:
        request = job.request
        with logs.bind(pipeline=request.pipeline_id, run=request.run):
            run = (
                self.executor.run(request, job.delivery.attempt)
                if lease is None
                else self.executor.run(request, job.delivery.attempt, fence=lease.renew)
            )
            with tracing.attached(job.trace):  # the task starts in (a copy of) the job's context
                lane.task = asyncio.get_running_loop().create_task(run)
            metrics.RUNS_ACTIVE.inc()
            metrics.IN_FLIGHT.running(request.run, request.rollout_timeout)
            try:
                result = await asyncio.shield(lane.task)
            except (asyncio.CancelledError, LeaseLost) as exc:
                if isinstance(exc, LeaseLost) or (lane.lease_lost and lane.task.cancelled()):
                    log.warning("the workload's lease was lost; handing the run back, it did not patch since")
                    await _settle(job.delivery.nak(self.retry_delay), request)
                    return
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

    def _running(self) -> list[asyncio.Task[RunResult]]:
        return [lane.task for lane in self._lanes.values() if lane.task is not None and not lane.task.done()]

    async def _hand_back_queued(self) -> None:
        for lane in list(self._lanes.values()):
            while lane.pending:
                job = lane.pending.pop(0)  # one at a time: an interrupted hand-back leaves the rest queued
                await _settle(job.delivery.nak(0), job.request)
                self._release(job)

    async def drain(self, timeout: float) -> None:
        """Take no more work, hand back queued requests, give running ones `timeout` seconds to finish.

        Runs still going afterwards (or when this wait is cancelled) are left to `hand_back`.
        """
        self._closing = True
        await self._hand_back_queued()
        running = self._running()
        if running:
            log.info("waiting for in-flight runs", extra={"runs": len(running), "grace_seconds": round(timeout, 3)})
            await asyncio.wait(running, timeout=max(timeout, 0.0))

    async def hand_back(self) -> None:
        """Cancel the runs still going; returns once every held message is settled (nak'ed, or acked if done)."""
        self._closing = True
        await self._hand_back_queued()  # left over if `drain` was cut short
        for task in self._running():
            task.cancel()
        workers = [lane.worker for lane in self._lanes.values() if lane.worker is not None]
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)

    async def shutdown(self, grace: float) -> None:
        """`drain(grace)` then `hand_back()`."""
        await self.drain(grace)
        await self.hand_back()


async def _settle(action: Awaitable[None], request: DeployRequest) -> None:
    try:
        await action
    except Exception as exc:
        # Unsettled messages come back after ack_wait; every step is idempotent.
        log.warning("could not settle the message", extra={"run": request.run, "error": str(exc)})

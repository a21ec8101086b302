"""Per-workload leases in the JetStream KV bucket `conveyor_deploy_leases`, shared by every deployer replica.

- Acquire = create-if-absent: only one replica can create the entry of a workload.
- Entries expire with the bucket's TTL (max age), so a SIGKILLed replica's leases lapse on their own;
  a live holder renews with an update conditional on the revision it holds.
- Fencing: that conditional update is also the check made right before a PATCH. It fails once the entry
  expired or was re-created by another replica, and the run then hands its request back instead of writing.

Next to it, `conveyor_deploy_applied` keeps the newest request applied (or found applied) per container
for every replica, so that an older request never overwrites a newer one that needed no PATCH.

Both buckets are made by `conveyor.bus.ensure_kv` with the service's `CONVEYOR_BUS_REPLICAS` copies.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from conveyor import bus
from conveyor_deployer.usecases.ports import AppliedEntry, LeaseLost

log = logging.getLogger(__name__)

BUCKET = "conveyor_deploy_leases"


def lease_key(workload: str) -> str:
    """A valid KV key for a workload, whatever characters its names use."""
    return hashlib.sha256(workload.encode()).hexdigest()[:40]


class KvLease:
    def __init__(self, kv: KeyValue, key: str, value: bytes, revision: int) -> None:
        self.kv = kv
        self.key = key
        self.value = value
        self._revision = revision
        # The renewal loop and the fence before a PATCH share the revision: one conditional update at a time.
        self._lock = asyncio.Lock()

    @property
    def revision(self) -> int:
        return self._revision

    async def renew(self) -> None:
        async with self._lock:
            try:
                self._revision = await self.kv.update(self.key, self.value, last=self._revision)
            except KeyWrongLastSequenceError:
                raise LeaseLost(f"lease {self.key} at revision {self._revision} is no longer held") from None

    async def release(self) -> None:
        async with self._lock:
            await self._delete()

    async def _delete(self) -> None:
        try:
            await self.kv.delete(self.key, last=self._revision)
        except Exception as exc:  # lost already, or NATS away: the entry expires anyway
            log.debug("releasing a lease failed", extra={"key": self.key, "error": str(exc)})


class KvLeases:
    def __init__(self, kv: KeyValue, ttl: float) -> None:
        self.kv = kv
        self.ttl = ttl

    @classmethod
    async def open(cls, js: JetStreamContext, *, ttl: float, replicas: int) -> KvLeases:
        kv = await bus.ensure_kv(
            js, KeyValueConfig(bucket=BUCKET, history=1, ttl=ttl, storage=StorageType.FILE), replicas=replicas
        )
        status = await kv.status()
        # The bucket's own TTL rules (it may have been created by another replica with another setting).
        return cls(kv, status.ttl or ttl)

    @property
    def renew_interval(self) -> float:
        return self.ttl / 3

    async def acquire(self, workload: str, holder: str) -> KvLease | None:
        key = lease_key(workload)
        value = holder.encode()
        try:
            revision = await self.kv.create(key, value)
        except KeyWrongLastSequenceError:
            return None
        return KvLease(self.kv, key, value, revision)


APPLIED_BUCKET = "conveyor_deploy_applied"
# Long enough for any redelivery or delayed request to meet its newer sibling's entry.
APPLIED_TTL = 30 * 24 * 3600.0


class KvAppliedOrders:
    """`AppliedOrders` in the KV bucket `conveyor_deploy_applied`: one entry per container, newest wins."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    @classmethod
    async def open(cls, js: JetStreamContext, *, replicas: int) -> KvAppliedOrders:
        config = KeyValueConfig(bucket=APPLIED_BUCKET, history=1, ttl=APPLIED_TTL, storage=StorageType.FILE)
        return cls(await bus.ensure_kv(js, config, replicas=replicas))

    async def _read(self, slot: str) -> tuple[AppliedEntry | None, int]:
        try:
            entry = await self.kv.get(lease_key(slot))
        except KeyNotFoundError:
            return None, 0
        data = json.loads(entry.value or b"{}")
        order = (dt.datetime.fromisoformat(data["requestedAt"]), str(data["runId"]))
        return (order, str(data["run"]), str(data["image"])), entry.revision or 0

    async def latest(self, slot: str) -> AppliedEntry | None:
        return (await self._read(slot))[0]

    async def note(self, slot: str, entry: AppliedEntry) -> None:
        (requested_at, run_id), run, image = entry
        value = json.dumps(
            {
                "requestedAt": requested_at.isoformat(timespec="microseconds"),
                "runId": run_id,
                "run": run,
                "image": image,
            }
        ).encode()
        for _ in range(5):  # a conditional write; a concurrent writer makes us compare again
            current, revision = await self._read(slot)
            if current is not None and current[0] >= entry[0]:
                return
            try:
                if revision:
                    await self.kv.update(lease_key(slot), value, last=revision)
                else:
                    await self.kv.create(lease_key(slot), value)
                return
            except KeyWrongLastSequenceError:
                continue

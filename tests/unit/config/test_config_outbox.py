"""The outbox relay's backoff: conveyor.retry's policy, stored with the row as its next attempt time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from conveyor_config.usecases.outbox import OutboxRelay, retry_policy
from conveyor_config.usecases.ports import OutboxMessage

NOW = 1_700_000_000.0


class FakeStore:
    def __init__(self, messages: list[OutboxMessage]) -> None:
        self.messages = messages
        self.failed: list[tuple[int, str, int]] = []
        self.delivered: list[int] = []
        self.claims: list[tuple[int, int]] = []  # (now_us, lease_until_us)
        self.released: list[tuple[list[int], int]] = []

    async def claim_outbox(self, now_us: int, limit: int, lease_until_us: int) -> list[OutboxMessage]:
        self.claims.append((now_us, lease_until_us))
        taken = {f[0] for f in self.failed} | set(self.delivered) | {i for ids, _ in self.released for i in ids}
        return [m for m in self.messages if m.id not in taken][:limit]

    async def outbox_release(self, ids: Sequence[int], next_attempt_us: int) -> None:
        self.released.append((list(ids), next_attempt_us))

    async def outbox_delivered(self, ids: Sequence[int]) -> None:
        self.delivered += ids

    async def outbox_failed(self, message_id: int, error: str, next_attempt_us: int) -> None:
        self.failed.append((message_id, error, next_attempt_us))

    async def outbox_pending(self) -> int:
        return len(self.messages) - len(self.delivered)


class DownPublisher:
    def ready(self) -> bool:
        return True

    async def publish(self, subject: str, payload: bytes, msg_id: str) -> None:
        raise TimeoutError("nats: timeout")


def old_formula(attempts: int, maximum: float = 30.0) -> float:
    """The relay's backoff before conveyor.retry, which rows already stored were scheduled with."""
    return float(min(0.5 * 2 ** min(attempts, 10), maximum))


@pytest.mark.parametrize("attempts", range(14))
def test_the_policy_is_the_stored_formula(attempts: int) -> None:
    assert retry_policy().ceiling(attempts + 1) == old_formula(attempts)
    assert retry_policy(4.0).ceiling(attempts + 1) == old_formula(attempts, 4.0)


@pytest.mark.parametrize(("attempts", "wait"), [(0, 0.5), (3, 4.0), (9, 30.0)])
async def test_a_failed_publish_stores_its_next_attempt_time(attempts: int, wait: float) -> None:
    store = FakeStore([OutboxMessage(7, "pipelines/web/runs/r1", "conveyor.deploy.requested", b"x", attempts)])
    relay = OutboxRelay(store, DownPublisher(), clock=lambda: NOW)
    assert await relay.flush() == 0
    assert store.failed == [(7, "nats: timeout", int((NOW + wait) * 1e6))]


async def test_a_claim_is_leased_and_what_a_failure_left_unpublished_is_handed_back() -> None:
    rows = [OutboxMessage(i, f"pipelines/web/runs/r{i}", "conveyor.deploy.requested", b"x", 0) for i in (1, 2, 3)]
    store = FakeStore(rows)
    relay = OutboxRelay(store, DownPublisher(), lease=12.0, clock=lambda: NOW)
    assert await relay.flush() == 0
    assert store.claims == [(int(NOW * 1e6), int((NOW + 12.0) * 1e6))]
    assert [f[0] for f in store.failed] == [1]
    assert store.released == [([2, 3], int(NOW * 1e6))]  # due again at once, for any replica

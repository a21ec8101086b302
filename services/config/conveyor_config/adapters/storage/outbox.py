"""The transactional outbox in SQL: rows written with the change that caused them, until published."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Select, delete, func, select, update

from conveyor_config.adapters.storage.base import SqlBase, safe_text
from conveyor_config.adapters.storage.schema import outbox
from conveyor_config.usecases.ports import OutboxMessage


def _due(now_us: int, limit: int) -> Select[tuple[int, str, str, bytes, int]]:
    return (
        select(outbox.c.id, outbox.c.msg_id, outbox.c.subject, outbox.c.payload, outbox.c.attempts)
        .where(outbox.c.next_attempt_us <= now_us)
        .order_by(outbox.c.id)
        .limit(limit)
    )


class SqlOutbox(SqlBase):
    async def due_outbox(self, now_us: int, limit: int) -> list[OutboxMessage]:
        """The rows due at `now_us`, without claiming them (what is waiting, for inspection)."""
        async with self._reading() as conn:
            rows = (await conn.execute(_due(now_us, limit))).all()
        return [OutboxMessage(row.id, row.msg_id, row.subject, row.payload, row.attempts) for row in rows]

    async def claim_outbox(self, now_us: int, limit: int, lease_until_us: int) -> list[OutboxMessage]:
        """Take the rows due at `now_us` for one relay: no other relay gets them before `lease_until_us`.

        PostgreSQL: FOR UPDATE SKIP LOCKED, so replicas claiming at once take disjoint rows without waiting
        on each other; the moved next-attempt time keeps them taken after this short transaction commits.
        SQLite: one writer at a time (BEGIN IMMEDIATE), which serializes claims by itself.
        """
        async with self._writing() as conn:
            rows = (await conn.execute(_due(now_us, limit).with_for_update(skip_locked=True))).all()
            if rows:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.id.in_([row.id for row in rows]))
                    .values(next_attempt_us=lease_until_us)
                )
        return [OutboxMessage(row.id, row.msg_id, row.subject, row.payload, row.attempts) for row in rows]

    async def outbox_release(self, ids: Sequence[int], next_attempt_us: int) -> None:
        """Give claimed rows back unpublished (not a failure of theirs), due again at `next_attempt_us`."""
        if not ids:
            return
        async with self._writing() as conn:
            await conn.execute(update(outbox).where(outbox.c.id.in_(list(ids))).values(next_attempt_us=next_attempt_us))

    async def outbox_delivered(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self._writing() as conn:
            await conn.execute(delete(outbox).where(outbox.c.id.in_(list(ids))))

    async def outbox_failed(self, message_id: int, error: str, next_attempt_us: int) -> None:
        async with self._writing() as conn:
            await conn.execute(
                update(outbox)
                .where(outbox.c.id == message_id)
                .values(attempts=outbox.c.attempts + 1, next_attempt_us=next_attempt_us, last_error=safe_text(error))
            )

    async def outbox_pending(self) -> int:
        async with self._reading() as conn:
            return int(await conn.scalar(select(func.count()).select_from(outbox)) or 0)

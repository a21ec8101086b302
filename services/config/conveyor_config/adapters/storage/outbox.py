"""The transactional outbox in SQL: rows written with the change that caused them, until published."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select, update

from conveyor_config.adapters.storage.base import SqlBase, safe_text
from conveyor_config.adapters.storage.schema import outbox
from conveyor_config.usecases.ports import OutboxMessage


class SqlOutbox(SqlBase):
    async def due_outbox(self, now_us: int, limit: int) -> list[OutboxMessage]:
        query = (
            select(outbox.c.id, outbox.c.msg_id, outbox.c.subject, outbox.c.payload, outbox.c.attempts)
            .where(outbox.c.next_attempt_us <= now_us)
            .order_by(outbox.c.id)
            .limit(limit)
        )
        async with self._reading() as conn:
            rows = (await conn.execute(query)).all()
        return [OutboxMessage(row.id, row.msg_id, row.subject, row.payload, row.attempts) for row in rows]

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

"""Bulk-load pipelines straight into the config service's database.

Creating 100,000 pipelines one gRPC call at a time would take minutes and measure nothing the
benchmarks report, so seeding writes rows in batches through the config service's own schema
(`conveyor_config.adapters.storage.schema`) and row mapping (`...storage.pipelines.pipeline_values`),
so the rows are exactly what CreatePipeline would store. No change notice is sent: a running
trigger only sees seeded pipelines after a restart (or its periodic re-sync).
"""

from __future__ import annotations

import time

from bench.fixtures import seed_id, seed_pipeline
from conveyor_config.adapters.storage.engine import open_database
from conveyor_config.adapters.storage.pipelines import pipeline_values
from conveyor_config.adapters.storage.schema import pipelines


async def seed_pipelines(database_url: str, start: int, stop: int, *, batch: int = 5000) -> float:
    """Insert seed pipelines number `start` .. `stop - 1`; returns the seconds it took."""
    began = time.monotonic()
    if stop <= start:
        return 0.0
    database = open_database(database_url)
    try:
        now_us = int(time.time() * 1_000_000)
        for low in range(start, stop, batch):
            rows = []
            for index in range(low, min(stop, low + batch)):
                rows.append({"id": seed_id(index), **pipeline_values(seed_pipeline(index, now_us))})
            async with database.write_engine.begin() as conn:
                await conn.execute(pipelines.insert(), rows)
    finally:
        await database.dispose()
    return time.monotonic() - began

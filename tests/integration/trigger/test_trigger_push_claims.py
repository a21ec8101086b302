"""The pushes bucket shared by trigger replicas: the first event of a push wins its claim atomically."""

from __future__ import annotations

import asyncio

import nats

from conveyor_trigger.adapters.jetstream import KvPushRegistry
from tests.support.nats_server import NatsServer


async def test_concurrent_claimers_on_two_connections_agree_on_one_push_id(nats_server: NatsServer) -> None:
    first, second = await nats.connect(nats_server.url), await nats.connect(nats_server.url)
    try:
        one = await KvPushRegistry.open(first.jetstream(), ttl=3600.0)
        two = await KvPushRegistry.open(second.jetstream(), ttl=3600.0)
        for push in range(20):
            key = f"registry.example.com/team/app@sha256:{push:064x}"
            records = await asyncio.gather(
                *(
                    (one if n % 2 else two).claim(key, f"event-{n}", time_ms=1_000 + n)
                    for n in range(8)  # eight events of one push handled at once by two replicas
                )
            )
            # KV create is create-if-absent: one claimer created the record, every other read that one.
            assert len({(r.push_id, r.time_ms, r.first_event_id) for r in records}) == 1, records
            (winner,) = [n for n in range(8) if records[n].first_event_id == f"event-{n}"]
            assert records[winner].time_ms == 1_000 + winner
        # What both replicas then mark deployed is merged, not overwritten.
        claimed = await one.claim("registry.example.com/team/app@sha256:" + "f" * 64, "a", 1)
        same = await two.claim("registry.example.com/team/app@sha256:" + "f" * 64, "b", 2)
        await asyncio.gather(one.mark_deployed(claimed, {"p1": "a"}), two.mark_deployed(same, {"p2": "b"}))
        after = await one.claim("registry.example.com/team/app@sha256:" + "f" * 64, "c", 3)
        assert after.deployed == {"p1": "a", "p2": "b"}
    finally:
        await first.close()
        await second.close()

"""`conveyorctl dead-letters list|replay`, the installed script against a real nats-server."""

from __future__ import annotations

import asyncio
import json
import os

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from conveyor import bus, dead_letters
from conveyor.v1 import bus_pb2
from tests.integration.ctl.ctl_process import Result, assert_one_line_error
from tests.support.nats_server import NatsServer
from tests.support.net import free_port
from tests.support.procs import console_script


async def ctl(nats_url: str, *args: str) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env["CONVEYOR_NATS_URL"] = nats_url
    process = await asyncio.create_subprocess_exec(
        console_script("conveyorctl"),
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Result(process.returncode, out.decode(), err.decode())


async def seed(js: JetStreamContext) -> list[int]:
    """Two run events and a deploy request, each stored, then dead-lettered by their consumer; their stream seqs."""
    await bus.ensure_streams(js)
    sequences = []
    for consumer, subject, message, msg_id, error in (
        (bus.CONFIG_RUN_EVENTS_DURABLE, bus.RUN_EVENTS_SUBJECT, bus_pb2.RunEvent(event_id="e1"), "e1", "bad time"),
        (bus.DEPLOYER_DURABLE, bus.DEPLOY_REQUESTED_SUBJECT, bus_pb2.DeployRequested(run="r"), "r1", "no run\nname"),
        (bus.CONFIG_RUN_EVENTS_DURABLE, bus.RUN_EVENTS_SUBJECT, bus_pb2.RunEvent(event_id="e2"), "e2", "bad enum"),
    ):
        headers = {bus.MSG_ID_HEADER: msg_id, bus.TYPE_HEADER: message.DESCRIPTOR.full_name}
        ack = await js.publish(subject, message.SerializeToString(), headers=headers)
        stored = await js.get_msg(ack.stream, ack.seq)
        original = dead_letters.Original(ack.stream, subject, ack.seq, stored.data or b"", stored.headers or {}, 5)
        assert await dead_letters.DeadLetters(js, consumer).store(original, dead_letters.FAILED, error)
        sequences.append(ack.seq)
    return sequences


async def test_list_shows_consumer_subject_error_time_and_sequence(nats_server: NatsServer, nc: NATS) -> None:
    await seed(nc.jetstream())
    result = await ctl(nats_server.url, "dead-letters", "list")
    assert result.code == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["SEQ", "TIME", "CONSUMER", "SUBJECT", "REASON", "DELIVERIES", "ERROR"]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert "conveyor-config-runs" in rows[0] and bus.RUN_EVENTS_SUBJECT in rows[0] and rows[0].endswith("bad time")
    assert "conveyor-deployer" in rows[1] and rows[1].endswith("no run name")  # one line per letter
    assert "(just now)" in rows[0] or "s ago)" in rows[0]

    filtered = await ctl(nats_server.url, "dead-letters", "list", "--consumer", bus.DEPLOYER_DURABLE, "-o", "json")
    assert filtered.code == 0, filtered.stderr
    [letter] = json.loads(filtered.stdout)["deadLetters"]
    assert letter["sequence"] == 2 and letter["consumer"] == bus.DEPLOYER_DURABLE
    assert (letter["subject"], letter["stream"], letter["reason"]) == (
        bus.DEPLOY_REQUESTED_SUBJECT,
        bus.DEPLOY_REQUESTS_STREAM,
        dead_letters.FAILED,
    )
    assert (letter["deliveries"], letter["msgId"], letter["error"]) == (5, "r1", "no run name")
    assert letter["headers"] == {bus.TYPE_HEADER: "conveyor.v1.DeployRequested"}
    assert letter["time"].endswith("Z")

    limited = await ctl(nats_server.url, "dead-letters", "list", "--limit", "2", "-o", "name")
    assert (limited.code, limited.stdout) == (0, "1\n2\n")


async def test_replay_republishes_to_the_original_subject_then_removes_the_letter(
    nats_server: NatsServer, nc: NATS
) -> None:
    js = nc.jetstream()
    await seed(js)
    before = (await js.stream_info(bus.RUN_EVENTS_STREAM)).state.last_seq
    result = await ctl(nats_server.url, "dead-letters", "replay", "3")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(
        f"replayed dead letter 3 (conveyor-config-runs, failed) to {bus.RUN_EVENTS_SUBJECT}"
    )
    stored = await js.get_msg(bus.RUN_EVENTS_STREAM, before + 1)
    assert bus.decode(bus_pb2.RunEvent, stored.data or b"").event_id == "e2"
    assert (stored.headers or {})[bus.TYPE_HEADER] == "conveyor.v1.RunEvent"
    assert (stored.headers or {})[bus.MSG_ID_HEADER] == "e2.replay-3"
    assert [letter.sequence for letter in await dead_letters.read(js)] == [1, 2]

    again = await ctl(nats_server.url, "dead-letters", "replay", "3")
    assert_one_line_error(again, 3, "error: NOT_FOUND: no such dead letter")
    assert (await js.stream_info(bus.RUN_EVENTS_STREAM)).state.last_seq == before + 1  # nothing published twice

    as_json = await ctl(nats_server.url, "dead-letters", "replay", "1", "-o", "json")
    assert as_json.code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "sequence": 1,
        "subject": bus.RUN_EVENTS_SUBJECT,
        "stream": bus.RUN_EVENTS_STREAM,
        "streamSequence": before + 2,
    }


async def test_failures_are_one_line_with_their_exit_code(nats_server: NatsServer, nc: NATS) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    unreachable = await ctl(nowhere, "dead-letters", "list")
    assert_one_line_error(unreachable, 4, f"error: UNAVAILABLE: cannot reach NATS at {nowhere}")
    assert "CONVEYOR_NATS_URL" in unreachable.stderr

    # A NATS no Conveyor service has used yet: no dead-letter stream, said so rather than "no dead letters".
    no_stream = await ctl(nats_server.url, "dead-letters", "list")
    assert_one_line_error(no_stream, 3, "error: NOT_FOUND: no CONVEYOR_DEAD_LETTERS stream")

    await bus.ensure_streams(nc.jetstream())
    empty = await ctl(nats_server.url, "dead-letters", "list")
    assert (empty.code, empty.stdout, empty.stderr) == (0, "", "No dead letters.\n")

    flag_wins = await ctl(nowhere, "dead-letters", "list", "--nats-url", nats_server.url, "-o", "json")
    assert (flag_wins.code, json.loads(flag_wins.stdout)) == (0, {"deadLetters": []})

    bad_seq = await ctl(nats_server.url, "dead-letters", "replay", "0")
    assert_one_line_error(bad_seq, 2, "error: argument SEQ: must be 1 or more")

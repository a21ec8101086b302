"""`conveyorctl dead-letters list|replay`: the CONVEYOR_DEAD_LETTERS stream, read over NATS directly.

An admin tool: it talks to NATS (`--nats-url`, else CONVEYOR_NATS_URL), not to a service's API, with
whatever rights that connection has. Once NATS has accounts and users (the security issue), only an
admin user may read the dead letters or republish them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from conveyor.settings import NATS_URL
from conveyor_ctl import render
from conveyor_ctl.failure import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNAVAILABLE, Failed, Failure

if TYPE_CHECKING:
    from nats.js import JetStreamContext

    from conveyor.dead_letters import DeadLetter
    from conveyor_ctl.commands import Context

T = TypeVar("T")

HELP = "messages a consumer could never process (admin: talks to NATS directly)"
EPILOG = (
    "A message lands here when it cannot be decoded, its consumer rejects it, or it keeps failing until its last\n"
    "allowed delivery (CONVEYOR_BUS_MAX_DELIVER). Fix the cause, then `replay SEQ` republishes it to its subject\n"
    "with its headers and removes it from the list. NATS: --nats-url, else CONVEYOR_NATS_URL, else\n"
    f"{NATS_URL.default}; admin-only once NATS has accounts."
)


def add_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--nats-url", metavar="URL", help=f"NATS server(s) (env {NATS_URL.env}, default {NATS_URL.default})"
    )


def sequence_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def nats_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    return str(args.nats_url or environ.get(NATS_URL.env, "").strip() or NATS_URL.default)


def list_letters(ctx: Context, args: argparse.Namespace) -> int:
    from conveyor import dead_letters

    url = nats_url(args, ctx.environ)
    letters = _talk(url, ctx.timeout, lambda js: dead_letters.read(js, consumer=args.consumer, limit=args.limit))
    out = ctx.out
    if out.machine:
        out.data({"deadLetters": [letter_dict(letter) for letter in letters]})
        return EXIT_OK
    if out.format == "name":
        for letter in letters:
            out.print(str(letter.sequence))
        return EXIT_OK
    table = render.Table(["SEQ", "TIME", "CONSUMER", "SUBJECT", "REASON", "DELIVERIES", "ERROR"])
    for letter in letters:
        when = f"{render.local_time(letter.time)} ({render.relative_time(letter.time, out.now)})"
        table.add(
            letter.sequence, when, letter.consumer, letter.subject, letter.reason, letter.deliveries, letter.error
        )
    out.table(table, empty="No dead letters.")
    if args.limit and len(letters) == args.limit:
        out.hint(f"(showing the oldest {args.limit}: add --limit 0 for all)")
    return EXIT_OK


def replay(ctx: Context, args: argparse.Namespace) -> int:
    from conveyor import dead_letters

    url = nats_url(args, ctx.environ)
    letter, ack = _talk(url, ctx.timeout, lambda js: dead_letters.replay(js, args.sequence, timeout=ctx.timeout))
    out = ctx.out
    if out.machine:
        out.data(
            {"sequence": letter.sequence, "subject": letter.subject, "stream": ack.stream, "streamSequence": ack.seq}
        )
    elif out.format == "name":
        out.print(str(letter.sequence))
    else:
        out.print(
            f"replayed dead letter {letter.sequence} ({letter.consumer}, {letter.reason}) to {letter.subject}: "
            f"{ack.stream} sequence {ack.seq}"
        )
    return EXIT_OK


def letter_dict(letter: DeadLetter) -> dict[str, Any]:
    """The JSON/YAML shape of one dead letter (camelCase, like the API's messages)."""
    return {
        "sequence": letter.sequence,
        "time": letter.time.isoformat().replace("+00:00", "Z") if letter.time else None,
        "consumer": letter.consumer,
        "reason": letter.reason,
        "error": letter.error,
        "deliveries": letter.deliveries,
        "stream": letter.stream,
        "streamSequence": letter.stream_sequence,
        "subject": letter.subject,
        "msgId": letter.msg_id,
        "headers": letter.headers,
        "data": base64.b64encode(letter.data).decode("ascii"),
    }


def _talk(url: str, timeout: float, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Connect, do `work` on JetStream within `timeout`, close; failures become one-line `Failed` reports."""
    return asyncio.run(_talk_async(url, timeout, work))


async def _talk_async(url: str, timeout: float, work: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    import nats
    from nats.errors import NoRespondersError, TimeoutError as NatsTimeout
    from nats.js.errors import APIError, NotFoundError

    from conveyor.bus import server_urls

    async def quiet(exc: Exception) -> None:
        """nats-py logs every connection error by default; the failure below says it once."""

    try:
        # One round over the servers: nats-py retries a first connection forever with 0 or -1 attempts.
        connecting = nats.connect(
            servers=server_urls(url),
            name="conveyorctl",
            connect_timeout=min(timeout, 5.0),
            max_reconnect_attempts=1,
            reconnect_time_wait=0.1,
            allow_reconnect=False,
            error_cb=quiet,
        )
        nc = await asyncio.wait_for(connecting, timeout)
    except Exception as exc:
        raise Failed(_unreachable(url, exc)) from None
    try:
        return await asyncio.wait_for(work(nc.jetstream(timeout=timeout)), timeout)
    except NotFoundError as exc:
        raise Failed(Failure("NOT_FOUND", _not_found(exc), EXIT_NOT_FOUND)) from None
    except (TimeoutError, NatsTimeout) as exc:
        raise Failed(_unreachable(url, exc)) from None
    except NoRespondersError:
        # JetStream's reply to a publish no stream stores, or a NATS without JetStream.
        raise Failed(Failure("FAILED_PRECONDITION", "no JetStream stream answered", EXIT_FAILED)) from None
    except (APIError, ValueError) as exc:
        raise Failed(Failure("FAILED_PRECONDITION", " ".join(str(exc).split()), EXIT_FAILED)) from None
    finally:
        await nc.close()


# JetStream's error code for a missing stream (a missing message is 10037).
_STREAM_NOT_FOUND = 10059


def _not_found(exc: Exception) -> str:
    if getattr(exc, "err_code", None) == _STREAM_NOT_FOUND:
        return "no CONVEYOR_DEAD_LETTERS stream on this NATS (has a Conveyor service started here?)"
    return "no such dead letter (see `conveyorctl dead-letters list`)"


def _unreachable(url: str, exc: BaseException) -> Failure:
    detail = " ".join(str(exc).split()) or type(exc).__name__
    return Failure(
        "UNAVAILABLE", f"cannot reach NATS at {url} (set --nats-url or {NATS_URL.env}): {detail}", EXIT_UNAVAILABLE
    )

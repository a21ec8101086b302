"""`python -m conveyor_sandbox`: serve a SANDBOX Kubernetes API (an emulator, not a cluster) until stopped."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import re2

from conveyor.settings import parse_duration
from conveyor_sandbox import DEFAULT_UNPULLABLE_TAGS, SandboxCluster


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 500ms, 2s or 1m") from None


def _pattern(text: str) -> str:
    try:
        re2.compile(text)
    except re2.error as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid RE2 expression: {exc}") from None
    return text


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m conveyor_sandbox",
        description="Serve a local SANDBOX Kubernetes API (an emulator: nothing runs) with simulated rollouts.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="listen port; 0 picks a free one (default 0)")
    parser.add_argument("--kubeconfig", required=True, help="where to write a kubeconfig pointing at the sandbox")
    parser.add_argument("--context", default="sandbox", help="context (and cluster) name in it (default sandbox)")
    parser.add_argument(
        "--state",
        help="keep the objects in this JSON file (written on every change); start from it when it exists",
    )
    parser.add_argument("--no-samples", action="store_true", help="start empty: no demo namespace or workloads")
    parser.add_argument("--web-image", help="image of the sample Deployment web's container app")
    parser.add_argument(
        "--rollout-delay",
        type=_duration,
        default=1.0,
        help="how long a simulated rollout takes after a template change (default 1s)",
    )
    parser.add_argument(
        "--unpullable-tags",
        type=_pattern,
        default=DEFAULT_UNPULLABLE_TAGS,
        help=f"image tags (RE2, full match) whose pull fails (default {DEFAULT_UNPULLABLE_TAGS!r})",
    )
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with SandboxCluster(
        host=args.host,
        port=args.port,
        rollout_delay=args.rollout_delay,
        unpullable_tags=args.unpullable_tags,
        context=args.context,
        state=args.state,
    ) as sandbox:
        if sandbox.restored:
            samples = f"objects restored from {args.state}"
        elif args.no_samples:
            samples = "empty"
        else:
            await sandbox.seed_samples(web_image=args.web_image)
            samples = "namespace demo: Deployment web, StatefulSet db, DaemonSet agent"
        path = sandbox.write_kubeconfig(args.kubeconfig)
        print(
            f"SANDBOX Kubernetes API emulator (not a real cluster) at {sandbox.url}; kubeconfig {path} "
            f"(context {args.context}); {samples}; tags matching {args.unpullable_tags!r} fail to pull",
            flush=True,
        )
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    except ValueError as exc:  # an unreadable state file
        print(f"conveyor sandbox: cannot restore {args.state}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
    except OSError as exc:  # e.g. the port is taken
        print(f"conveyor sandbox: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()

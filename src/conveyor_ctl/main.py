"""conveyorctl: the operator's command line for Conveyor.

Talks gRPC to config (pipelines, runs), trigger (registry events, tags) and deployer
(clusters and workloads). Every failure is one line on stderr (one object under -o json|yaml)
and a documented exit code.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from typing import IO, Any, NoReturn

from conveyor.settings import parse_duration
from conveyor_ctl import commands, completion, dead_letters, render, spec
from conveyor_ctl.client import ENDPOINTS, CallError, Clients, resolve_address
from conveyor_ctl.failure import EXIT_INTERRUPTED, EXIT_OK, Failed, Failure

EPILOG = """\
addresses (flag, else env, else default):
  config    --config-addr    CONVEYOR_CONFIG_ADDR    127.0.0.1:50051
  trigger   --trigger-addr   CONVEYOR_TRIGGER_ADDR   127.0.0.1:50052
  deployer  --deployer-addr  CONVEYOR_DEPLOYER_ADDR  127.0.0.1:50053
  NATS      --nats-url       CONVEYOR_NATS_URL       nats://127.0.0.1:4222  (dead-letters only)

output:
  -o table (default; colours on a terminal unless NO_COLOR is set), -o json / -o yaml
  (the API's protobuf JSON shape, stable field names: use these in scripts), -o name.
  Under -o json|yaml an error is one object on stderr:
  {"error": {"code": "INVALID_ARGUMENT", "message": ..., "exitCode": 1, "details": [google.rpc details]}}

tag filters (--tag-filter) match the WHOLE tag: any, exact:TAG, regex:RE2 or semver:RANGE where
  regex:v\\d+(\\.\\d+)* matches v1.3.0 and v2 but not v1.3.0-rc1, and regex:v\\d+ matches only v1, v12, ...;
  semver:^1.2 matches 1.2.0 and v1.9.3, not 2.0.0 nor 1.3.0-rc.1 (unless --include-prereleases);
  --exclude PATTERN (glob or regex:RE2, repeatable) names tags that never deploy

exit codes:
  0  success
  1  the service rejected the request (INVALID_ARGUMENT, FAILED_PRECONDITION, INTERNAL, ...)
  2  usage error: bad flags or input, or a needed confirmation missing (--yes) or declined;
     nothing was changed
  3  NOT_FOUND
  4  a service is unreachable or did not answer in time (UNAVAILABLE, DEADLINE_EXCEEDED)
  5  conflict: stale etag (ABORTED) or ALREADY_EXISTS; re-read and retry
  6  pipelines start --follow, runs logs -f: the run did not succeed (FAILED, SUPERSEDED, CANCELLED)
  130 interrupted (Ctrl-C)

examples:
  conveyorctl pipelines create web --image registry.example.com/team/web --tag-filter 'regex:v\\d+(\\.\\d+)*' \\
      --cluster prod -n shop --kind deployment --workload web --container app
  conveyorctl pipelines start web --tag v1.4.2 --follow
  conveyorctl runs list web --state failed
  conveyorctl runs logs -f pipelines/web/runs/01j9...
  conveyorctl events list --repository team/web
  conveyorctl dead-letters list && conveyorctl dead-letters replay 12
  source <(conveyorctl completion bash)
"""

Handler = Callable[[commands.Context, argparse.Namespace], int]


class UsageExit(Exception):
    """A command line argparse rejected; reported like every other failure."""


class Parser(argparse.ArgumentParser):
    """argparse without abbreviated flags (`--imag` is not `--image`), failing with `UsageExit`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)
        # Parsers of the command groups (`pipelines`, ...), whose help a bare group prints.
        self.group_parsers: dict[str, Parser] = {}

    def error(self, message: str) -> NoReturn:
        raise UsageExit(f"{message} (see {self.prog} --help)")


def _common_options(*, top: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the command: `conveyorctl -o json runs list` = `runs list -o json`."""
    default = None if top else argparse.SUPPRESS
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection and output")
    for endpoint in ENDPOINTS:
        group.add_argument(
            endpoint.flag,
            metavar="HOST:PORT",
            default=default,
            help=f"{endpoint.label} service (env {endpoint.env}, default {endpoint.default})",
        )
    group.add_argument("-o", "--output", choices=render.OUTPUT_FORMATS, default=default, help="output format")
    group.add_argument("--timeout", metavar="DURATION", default=default, help="deadline per call (default 30s)")
    return parent


def build_parser() -> Parser:
    parser = Parser(
        prog="conveyorctl",
        description="Operate Conveyor: pipelines, runs, registry events and deploy targets.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[_common_options(top=True)],
    )
    parser.add_argument("--version", action="version", version=f"conveyorctl {_version()}")
    common = _common_options(top=False)
    # Not required: a bare `conveyorctl` (or `conveyorctl pipelines`) prints its help, as kubectl does.
    groups = parser.add_subparsers(dest="group", metavar="COMMAND", parser_class=Parser)

    def group(name: str, help_text: str) -> Any:
        group_parser: Parser = groups.add_parser(name, help=help_text, description=help_text)
        parser.group_parsers[name] = group_parser
        return group_parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(sub: Any, name: str, handler: Handler, help_text: str, **kwargs: Any) -> Parser:
        cmd: Parser = sub.add_parser(name, help=help_text, description=help_text, parents=[common], **kwargs)
        cmd.set_defaults(handler=handler)
        return cmd

    def list_options(cmd: Parser, default_limit: int = 100) -> None:
        cmd.add_argument(
            "--limit", type=_non_negative, default=default_limit, help=f"at most N (0 = all; default {default_limit})"
        )
        cmd.add_argument("--page-token", default="", help="continue a previous listing")

    # pipelines
    pipelines = group("pipelines", "pipelines: what to deploy where")
    cmd = command(pipelines, "list", commands.pipelines_list, "list pipelines")
    cmd.add_argument("--filter", help='AIP-160 filter, e.g. target.cluster = "prod" AND disabled = "false"')
    for flag in ("registry", "repository", "cluster", "namespace", "workload"):
        short = ["-n"] if flag == "namespace" else []
        cmd.add_argument(*short, f"--{flag}", help=f"only pipelines with this {flag}")
    list_options(cmd)

    cmd = command(pipelines, "get", commands.pipelines_get, "show a pipeline")
    cmd.add_argument("name", metavar="NAME", help="ID or pipelines/ID")

    cmd = command(
        pipelines,
        "create",
        commands.pipelines_create,
        "create a pipeline from flags and/or -f FILE",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="FILE is YAML or JSON in the Pipeline JSON shape (what `pipelines get -o yaml` prints); flags win.",
    )
    cmd.add_argument("name", metavar="NAME", nargs="?", help="ID (generated when omitted) or pipelines/ID")
    cmd.add_argument("-f", "--file", help="YAML/JSON pipeline file, - for stdin")
    cmd.add_argument("--request-id", help="idempotency key (a retry with the same id returns the same pipeline)")
    cmd.add_argument("--validate-only", action="store_true", help="check the request without creating anything")
    spec.add_pipeline_flags(cmd)

    cmd = command(
        pipelines,
        "update",
        commands.pipelines_update,
        "change the given fields of a pipeline (a field mask of exactly those)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Without --etag, reads the pipeline first and sends its etag (retrying if it changes meanwhile).",
    )
    cmd.add_argument("name", metavar="NAME", help="ID or pipelines/ID")
    cmd.add_argument("-f", "--file", help="YAML/JSON with the fields to set, - for stdin")
    cmd.add_argument("--etag", help="only update if the pipeline still has this etag")
    cmd.add_argument("--validate-only", action="store_true", help="check the request without changing anything")
    spec.add_pipeline_flags(cmd)

    cmd = command(
        pipelines,
        "delete",
        commands.pipelines_delete,
        "delete a pipeline and its run history",
        epilog="Asks first on a terminal, saying how many runs go with it; elsewhere (scripts) --yes is required.",
    )
    cmd.add_argument("name", metavar="NAME", help="ID or pipelines/ID")
    cmd.add_argument("--etag", default="", help="only delete if the pipeline still has this etag")
    cmd.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    cmd = command(pipelines, "start", commands.pipelines_start, "start a run by hand with a chosen tag")
    cmd.add_argument("name", metavar="NAME", help="ID or pipelines/ID")
    cmd.add_argument("--tag", required=True, help="the tag to deploy (see `pipelines tags NAME`)")
    cmd.add_argument("--digest", help="sha256:… digest of the image")
    cmd.add_argument("--request-id", help="idempotency key (a retry with the same id returns the same run)")
    cmd.add_argument(
        "--allow-unverified",
        action="store_true",
        help="deploy by tag even if the registry cannot be asked whether the tag exists (audited)",
    )
    cmd.add_argument(
        "-f", "--follow", action="store_true", help="stream the run's log until it ends (exit 6 if it does not succeed)"
    )

    cmd = command(pipelines, "tags", commands.pipelines_tags, "list the tags in a pipeline's repository")
    cmd.add_argument("name", metavar="NAME", help="ID or pipelines/ID")
    cmd.add_argument("--digests", action="store_true", help="resolve each tag's digest")
    list_options(cmd)

    # runs
    runs = group("runs", "runs: deliveries of one image by one pipeline")
    cmd = command(runs, "list", commands.runs_list, "list runs, newest first")
    cmd.add_argument("pipeline", metavar="PIPELINE", nargs="?", help="only this pipeline's runs (default: all)")
    which = cmd.add_mutually_exclusive_group()
    which.add_argument("--state", type=_states, help="comma-separated states: " + ",".join(spec.RUN_STATES))
    which.add_argument("--filter", help="raw filter, e.g. 'state = FAILED OR state = RUNNING'")
    list_options(cmd, default_limit=50)

    for name, handler, help_text in (
        ("get", commands.runs_get, "show a run"),
        ("delete", commands.runs_delete, "delete a finished run"),
    ):
        cmd = command(runs, name, handler, help_text)
        cmd.add_argument("name", metavar="RUN", help="pipelines/P/runs/R or P/R")

    cmd = command(runs, "logs", commands.runs_logs, "print a run's log")
    cmd.add_argument("name", metavar="RUN", help="pipelines/P/runs/R or P/R")
    cmd.add_argument(
        "-f", "--follow", action="store_true", help="keep streaming until the run ends (exit 6 if it does not succeed)"
    )

    # events
    events = group("events", "registry events and why they did or did not deploy")
    cmd = command(events, "list", commands.events_list, "recent registry pushes with match decisions")
    cmd.add_argument("--registry", help="only this registry host")
    cmd.add_argument("--repository", help="only this repository")
    cmd.add_argument("--tag", help="only this tag")
    cmd.add_argument(
        "--decision",
        type=spec.enum_word("decision", spec.DECISIONS),
        help="only events with a decision of this outcome: " + " | ".join(spec.DECISIONS),
    )
    list_options(cmd, default_limit=50)

    # targets
    targets = group("targets", "what the deployer's clusters contain")
    command(targets, "clusters", commands.targets_clusters, "configured clusters")
    cmd = command(targets, "namespaces", commands.targets_namespaces, "namespaces of a cluster")
    cmd.add_argument("--cluster", help="default: the only configured cluster")
    cmd = command(targets, "workloads", commands.targets_workloads, "deployments, statefulsets and daemonsets")
    cmd.add_argument("--cluster", help="default: the only configured cluster")
    cmd.add_argument("--namespace", "-n", required=True)
    cmd.add_argument("--kind", type=spec.enum_word("kind", spec.KINDS), help="only this kind")
    cmd = command(targets, "containers", commands.targets_containers, "a workload's containers and images")
    cmd.add_argument("workload", metavar="WORKLOAD", help="workload name")
    cmd.add_argument("--cluster", help="default: the only configured cluster")
    cmd.add_argument("--namespace", "-n", required=True)
    cmd.add_argument("--kind", type=spec.enum_word("kind", spec.KINDS), help="needed only if the name is ambiguous")

    # dead letters: NATS directly (an admin tool)
    dead = group("dead-letters", dead_letters.HELP)
    raw = argparse.RawDescriptionHelpFormatter
    cmd = command(
        dead,
        "list",
        dead_letters.list_letters,
        "list dead letters, oldest first",
        formatter_class=raw,
        epilog=dead_letters.EPILOG,
    )
    cmd.add_argument("--consumer", help="only this consumer's (its durable name, e.g. conveyor-config-runs)")
    cmd.add_argument("--limit", type=_non_negative, default=100, help="at most N (0 = all; default 100)")
    dead_letters.add_options(cmd)
    cmd = command(
        dead,
        "replay",
        dead_letters.replay,
        "republish a dead letter to its subject with its headers, then remove it",
        formatter_class=raw,
        epilog=dead_letters.EPILOG,
    )
    cmd.add_argument(
        "sequence", metavar="SEQ", type=dead_letters.sequence_number, help="its SEQ in `dead-letters list`"
    )
    dead_letters.add_options(cmd)

    cmd = command(
        groups,
        "completion",
        _completion,
        "print a shell completion script",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="load it with:\n  bash: source <(conveyorctl completion bash)\n"
        "  zsh:  source <(conveyorctl completion zsh)   (after compinit)\n"
        "  fish: conveyorctl completion fish | source",
    )
    cmd.add_argument("shell", choices=completion.SHELLS, help="bash, zsh or fish")
    return parser


def _completion(ctx: commands.Context, args: argparse.Namespace) -> int:
    ctx.out.print(completion.script(args.shell, build_parser()).rstrip("\n"))
    return EXIT_OK


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _states(text: str) -> list[int]:
    word = spec.enum_word("state", spec.RUN_STATES)
    return [word(part) for part in text.split(",") if part.strip()]


def _version() -> str:
    try:
        return metadata.version("conveyor")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------- errors


def requested_format(argv: Sequence[str]) -> str:
    """The -o/--output value on a command line argparse may yet reject, so that error has the same format."""
    fmt = "table"
    words = list(argv)
    for index, word in enumerate(words):
        if word == "--":
            break
        value = None
        if word in ("-o", "--output") and index + 1 < len(words):
            value = words[index + 1]
        elif word.startswith("--output="):
            value = word.removeprefix("--output=")
        elif word.startswith("-o") and not word.startswith("--") and len(word) > 2:
            value = word[2:].removeprefix("=")
        if value in render.OUTPUT_FORMATS:
            fmt = value
    return fmt


def report(failure: Failure, fmt: str, stream: IO[str]) -> int:
    """The failure on stderr: its lines, or one object under -o json|yaml; returns its exit code."""
    text = render.dump(failure.data(), fmt) if fmt in ("json", "yaml") else failure.text()
    print(text, file=stream, flush=True)
    return failure.exit_code


# ---------------------------------------------------------------- entry point


def run(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
    stdin: IO[str] | None = None,
) -> int:
    """Parse, run one command, and return its exit code (never raises for expected failures)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    env = os.environ if environ is None else environ
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageExit as exc:
        return report(Failure.usage(str(exc)), requested_format(argv), err)
    except SystemExit as exc:  # --help and --version
        return int(exc.code or 0)
    fmt = args.output or "table"
    if args.group is None:
        parser.print_help(stdout)
        return EXIT_OK
    if getattr(args, "handler", None) is None:
        parser.group_parsers[args.group].print_help(stdout)
        return EXIT_OK
    try:
        timeout = parse_duration(args.timeout) if args.timeout else 30.0
    except ValueError:
        return report(Failure.usage(f"--timeout {args.timeout!r}: expected a duration such as 10s or 1m"), fmt, err)
    addresses = {e.label: resolve_address(e, getattr(args, e.flag[2:].replace("-", "_")), env) for e in ENDPOINTS}
    clients = Clients(addresses, timeout)
    out = render.Output(fmt, stdout=stdout, stderr=err)
    ctx = commands.Context(clients=clients, out=out, stdin=stdin, environ=env, timeout=timeout)
    try:
        return int(args.handler(ctx, args))
    except spec.UsageError as exc:
        return report(Failure.usage(str(exc)), fmt, err)
    except CallError as exc:
        return report(Failure.from_call(exc), fmt, err)
    except Failed as exc:
        return report(exc.failure, fmt, err)
    except KeyboardInterrupt:
        return report(Failure.interrupted(), fmt, err)
    finally:
        clients.close()


def main() -> None:
    # Die quietly like other Unix tools when the reader of a pipe goes away (`| head`).
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code = run()
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    sys.exit(code)


if __name__ == "__main__":
    main()

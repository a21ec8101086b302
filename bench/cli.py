"""Command line of `python -m bench` (`make bench`)."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import io
import logging
import os
import pathlib
import platform
import pstats
import shutil
import sys
import tempfile
import time
import traceback
from typing import Any

from bench.report import ScenarioResult, render_notes, render_table, to_json
from bench.scenarios import PROFILED, SCENARIOS, Context, sizes_for
from bench.system import BenchSystem

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SCENARIO_TIMEOUT = 900.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Conveyor benchmarks: runs nats-server, the sandbox Kubernetes API, conveyor-config, "
        "conveyor-trigger and conveyor-deployer on loopback ports and prints what they achieve next to the "
        "targets. Asserts nothing.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of a few seconds per scenario")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these scenarios (repeat or comma-separate): {', '.join(SCENARIOS)}",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of the table")
    parser.add_argument(
        "--profile",
        metavar="NAME",
        choices=sorted(SCENARIOS),
        help="run only scenario NAME with the services it exercises under cProfile (and the in-process part, "
        "if any) and print their top functions; figures measured this way are slowed by the profiler",
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const=DEFAULT_POSTGRES,
        metavar="URL",
        help=f"run config on PostgreSQL instead of SQLite: a fresh database is created next to URL's "
        f"(default {DEFAULT_POSTGRES}) and dropped afterwards",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="VAR=VALUE",
        help="extra environment for every service, e.g. --set CONVEYOR_DEPLOYER_MAX_CONCURRENT_RUNS=64 "
        "(to see what bounds a figure); printed with the results",
    )
    parser.add_argument("--top", type=int, default=25, help="functions per profile listing (default 25)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases, profiles)")
    parser.add_argument(
        "--log-level", default="info", choices=("debug", "info", "warning", "error"), help="services' log level"
    )
    args = parser.parse_args(argv)
    names: list[str] = []
    for item in args.only:
        for raw in item.split(","):
            name = raw.strip()
            if name and name not in SCENARIOS:
                parser.error(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
            if name:
                names.append(name)
    if args.profile:
        names = [args.profile]
    args.environment = {}
    for item in args.overrides:
        key, separator, value = item.partition("=")
        if not separator or not key.startswith("CONVEYOR_"):
            parser.error(f"--set {item!r}: expected CONVEYOR_VARIABLE=VALUE")
        args.environment[key] = value
    args.scenarios = [name for name in SCENARIOS if not names or name in names]
    return args


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def create_postgres_database(admin_url: str) -> tuple[str, str]:
    """A fresh database on the server of `admin_url`; returns (its SQLAlchemy URL, its name)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    url = make_url(admin_url)
    name = f"conveyor_bench_{os.getpid()}"
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return url.set(database=name, drivername="postgresql+asyncpg").render_as_string(hide_password=False), name


async def drop_postgres_database(admin_url: str, name: str) -> None:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(admin_url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def profile_listing(title: str, source: Any, top: int) -> str:
    buffer = io.StringIO()
    if isinstance(source, list):
        stats = pstats.Stats(*(str(path) for path in source), stream=buffer)
    else:
        stats = pstats.Stats(source, stream=buffer)
    stats.strip_dirs()
    buffer.write(f"\n===== profile: {title} -- top {top} by own time (tottime) =====\n")
    stats.sort_stats("tottime").print_stats(top)
    buffer.write(f"===== profile: {title} -- top {top} by cumulative time =====\n")
    stats.sort_stats("cumulative").print_stats(top)
    return buffer.getvalue()


async def run(args: argparse.Namespace) -> int:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    sizes = sizes_for(args.quick)
    database_url = None
    pg_name = None
    if args.postgres:
        database_url, pg_name = await create_postgres_database(args.postgres)
    profiled = set(PROFILED[args.profile]) if args.profile else set()
    system = BenchSystem(workdir, database_url=database_url, profiled=profiled - {"driver"}, log_level=args.log_level)
    ctx = Context(system, sizes)
    if "driver" in profiled:
        ctx.profiler = cProfile.Profile()
    results: list[ScenarioResult] = []
    failed = False
    began = time.monotonic()
    progress(f"work directory {workdir}; scenarios: {', '.join(args.scenarios)}{' (quick)' if args.quick else ''}")
    try:
        for name in args.scenarios:
            progress(f"running {name} ...")
            started = time.monotonic()
            try:
                result = await asyncio.wait_for(SCENARIOS[name](ctx), SCENARIO_TIMEOUT)
            except Exception as exc:
                failed = True
                result = ScenarioResult(name, name, error=f"{type(exc).__name__}: {exc}")
                progress(f"{name} failed:\n{traceback.format_exc()}")
            result.seconds = time.monotonic() - started
            results.append(result)
            progress(f"{name} done in {result.seconds:.0f} s")
    finally:
        progress("stopping the system ...")
        await system.close()
        if pg_name and args.postgres:
            await drop_postgres_database(args.postgres, pg_name)

    profiles: dict[str, str] = {}
    if args.profile:
        if ctx.profiler is not None:
            profiles["bench driver (in-process part)"] = profile_listing(
                f"{args.profile}: in-process part", ctx.profiler, args.top
            )
        for service, files in system.profiles().items():
            profiles[service] = profile_listing(f"{args.profile}: conveyor-{service} (main thread)", files, args.top)

    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "database": "postgresql" if args.postgres else "sqlite",
        "quick": args.quick,
        "profile": args.profile,
        "overrides": args.environment,
        "seconds": round(time.monotonic() - began, 1),
        "workdir": str(workdir) if (args.keep or failed) else None,
    }
    if args.json:
        document = to_json(results, meta)
        if profiles:
            import json

            data = json.loads(document)
            data["profiles"] = profiles
            document = json.dumps(data, indent=2)
        print(document)
    else:
        print(
            f"Conveyor benchmarks -- {meta['date']}, {meta['cpus']} CPUs, Python {meta['python']}, "
            f"config on {meta['database']}{', QUICK sizes' if args.quick else ''}"
            f"{', PROFILED (figures slowed by cProfile)' if args.profile else ''}; took {meta['seconds']:.0f} s"
        )
        if args.environment:
            print("settings changed from their defaults: " + ", ".join(f"{k}={v}" for k, v in args.environment.items()))
        print()
        print(render_table(results))
        print()
        print(render_notes(results))
        for text in profiles.values():
            print(text)
    if args.keep or failed:
        progress(f"work directory kept: {workdir} (service logs in logs/)")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # The driver's own NATS client logs reconnects and its close as warnings: not the bench's output.
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    try:
        code = asyncio.run(run(args))
    except KeyboardInterrupt:
        code = 130
    raise SystemExit(code)

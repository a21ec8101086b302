"""Reads the settings, takes the data dir, and runs the plan under the supervisor until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import pathlib
import sys
from collections.abc import Iterator, Mapping

from conveyor.settings import SettingsError
from conveyor_launcher import demo, plan
from conveyor_launcher.banner import banner, display_path
from conveyor_launcher.plan import LaunchError, check_ports, choose_nats_port
from conveyor_launcher.settings import LauncherSettings, current_kube_context, webhook_token
from conveyor_launcher.supervisor import Console, Supervisor
from conveyor_sandbox import images, registry


async def start_everything(settings: LauncherSettings, environ: Mapping[str, str], supervisor: Supervisor) -> None:
    """Carry out the plan step by step, then print how to try it."""
    token = settings.webhook_token or webhook_token(settings.data_dir)
    kube = current_kube_context(environ)
    nats_port = None if settings.nats_url else choose_nats_port(settings)
    registry_port = None
    if plan.use_sandbox(settings, environ, kube):
        registry_port = plan.choose_registry_port(settings)
        plan.remember_registry_port(settings.data_dir, registry_port)
    planned = plan.build(settings, environ, token=token, kube=kube, nats_port=nats_port, registry_port=registry_port)
    for step in planned.steps:
        await supervisor.start_step(step, settings.ready_timeout)
        for action in step.actions:
            await demo.perform(action, supervisor.console)
    local = planned.registry
    text = banner(
        settings,
        nats_url=planned.nats_url,
        token=token,
        sandbox_kubeconfig=planned.sandbox_kubeconfig,
        kube=kube,
        conveyorctl=display_path(plan.bin_path("conveyorctl")),
        registry=local,
        registry_tags=registry.stored_tags(local.storage, images.DEMO_REPOSITORY) if local else frozenset(),
    )
    supervisor.console.say(text)


async def launch(settings: LauncherSettings, environ: Mapping[str, str], console: Console) -> int:
    supervisor = Supervisor(console, grace=settings.grace)
    return await supervisor.run(start_everything(settings, dict(environ), supervisor))


@contextlib.contextmanager
def data_dir_lock(data_dir: pathlib.Path) -> Iterator[None]:
    """One launcher per data dir: a second one would fight over ports, SQLite and the JetStream store."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = (data_dir / "launcher.lock").open("w")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            message = f"another `make run` is already using {data_dir} (stop it, or set CONVEYOR_DATA_DIR)"
            raise LaunchError(message) from None
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def main() -> None:
    console = Console()
    try:
        settings = LauncherSettings.read(os.environ)
    except SettingsError as exc:
        print(f"conveyor launcher: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        with data_dir_lock(settings.data_dir):
            check_ports(settings)
            code = asyncio.run(launch(settings, os.environ, console))
    except LaunchError as exc:
        console.say(f"error: {exc}")
        code = 2
    raise SystemExit(code)

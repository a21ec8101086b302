"""A real local container registry: CNCF Distribution (Debian's `docker-registry`) on loopback.

`make run` runs one next to the sandbox cluster, storing under the data dir and notifying the
trigger's Distribution webhook of every push; the tests run them too. Pieces:

- `registry_config(...)`: the registry's config.yml (plain HTTP on one address, filesystem storage,
  notification endpoints); `write_config` writes it 0600 (it holds the webhook token);
- `registry_argv` / `registry_env`: how to run it (the env is minimal: Distribution lets any
  `REGISTRY_*` variable override its config);
- `stored_tags(storage, repository)`: the tags a stopped or running registry's storage holds;
- `LocalRegistry`: an async handle on one `docker-registry serve` process (start, push, stop);
- `seed(...)`: push the layout's images whose tags the storage lacks, through a temporary registry
  WITHOUT notifications, so seeding never looks like a push to deploy.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import pathlib
import secrets
import shutil
import socket
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import yaml

from conveyor_sandbox.images import skopeo_copy

REGISTRY_COMMAND = "docker-registry"
INSTALL_HINT = "install Debian's docker-registry and skopeo: sudo apt-get install -y docker-registry skopeo"


class RegistryError(RuntimeError):
    pass


def registry_binary() -> str:
    """The `docker-registry` on PATH (Debian installs /usr/bin/docker-registry)."""
    found = shutil.which(REGISTRY_COMMAND) or shutil.which(REGISTRY_COMMAND, path="/usr/bin")
    if found is None:
        raise RegistryError(f"{REGISTRY_COMMAND} not found: {INSTALL_HINT}")
    return found


@dataclasses.dataclass(frozen=True)
class NotificationEndpoint:
    """One `notifications.endpoints` entry of the registry config."""

    url: str
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    name: str = "conveyor"
    timeout: str = "2s"
    threshold: int = 3
    backoff: str = "500ms"
    ignored_actions: Sequence[str] = ()
    ignored_media_types: Sequence[str] = ()

    def to_config(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "name": self.name,
            "url": self.url,
            "headers": {key: [value] for key, value in self.headers.items()},
            "timeout": self.timeout,
            "threshold": self.threshold,
            "backoff": self.backoff,
        }
        if self.ignored_actions or self.ignored_media_types:
            entry["ignore"] = {"actions": list(self.ignored_actions), "mediatypes": list(self.ignored_media_types)}
        return entry


def registry_config(
    *,
    address: str,
    storage: pathlib.Path,
    secret: str,
    notifications: Sequence[NotificationEndpoint] = (),
    log_level: str = "info",
) -> dict[str, Any]:
    """config.yml of a plain-HTTP registry on `address` (host:port) storing under `storage`."""
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": log_level, "formatter": "text", "accesslog": {"disabled": True}},
        "storage": {
            "filesystem": {"rootdirectory": str(storage)},
            "delete": {"enabled": True},
            "maintenance": {"uploadpurging": {"enabled": False}},
        },
        # The secret signs upload state; a fixed one lets uploads survive a restart.
        "http": {"addr": address, "secret": secret},
    }
    if notifications:
        config["notifications"] = {
            "events": {"includereferences": True},
            "endpoints": [endpoint.to_config() for endpoint in notifications],
        }
    return config


def config_text(config: Mapping[str, Any]) -> str:
    text: str = yaml.safe_dump(dict(config), sort_keys=False)
    return text


def write_config(path: pathlib.Path, config: Mapping[str, Any]) -> pathlib.Path:
    """Write config.yml with mode 0600 (notification headers carry the webhook token)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(config_text(config))
    temporary.replace(path)
    return path


def registry_argv(config_path: pathlib.Path) -> list[str]:
    return [registry_binary(), "serve", str(config_path)]


def registry_env(home: pathlib.Path) -> dict[str, str]:
    """No inherited REGISTRY_* variable (each would override the config)."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def stored_tags(storage: pathlib.Path, repository: str) -> set[str]:
    """Tags of `repository` in a filesystem-driver storage (Distribution's on-disk layout)."""
    tags = storage / "docker" / "registry" / "v2" / "repositories" / repository / "_manifests" / "tags"
    if not tags.is_dir():
        return set()
    return {entry.name for entry in tags.iterdir() if (entry / "current" / "link").is_file()}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


async def wait_listening(host: str, port: int, timeout: float, process: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        if process.returncode is not None:
            raise RegistryError(f"{REGISTRY_COMMAND} exited with status {process.returncode}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if loop.time() > deadline:
                raise RegistryError(f"{REGISTRY_COMMAND} did not listen on {host}:{port} within {timeout:g}s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


class LocalRegistry:
    """One `docker-registry serve` process on a loopback port, its files under `workdir`.

    `storage` defaults to `workdir/storage`; `port` to a free one. Use `async with` (or start/stop).
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        port: int | None = None,
        storage: pathlib.Path | None = None,
        notifications: Sequence[NotificationEndpoint] = (),
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.storage = storage or workdir / "storage"
        self.notifications = tuple(notifications)
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    async def start(self, timeout: float = 15.0) -> Self:
        config = registry_config(
            address=self.host, storage=self.storage, secret=secrets.token_hex(16), notifications=self.notifications
        )
        write_config(self.config_path, config)
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *registry_argv(self.config_path),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env=registry_env(self.workdir),
            )
        try:
            await wait_listening("127.0.0.1", self.port, timeout, self.process)
        except RegistryError as exc:
            await self.stop()
            raise RegistryError(f"{exc}; its log:\n{self.log()[-4000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, grace: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def push(
        self,
        layout: pathlib.Path,
        ref: str,
        repository: str,
        tag: str | None = None,
        *,
        creds: tuple[str, str] | None = None,
    ) -> None:
        """Push the layout's image `ref` as REPOSITORY:TAG (default: TAG = ref) with skopeo."""
        await skopeo_copy(layout, ref, self.host, repository, tag, workdir=self.workdir / "skopeo", creds=creds)


async def seed(
    storage: pathlib.Path, workdir: pathlib.Path, layout: pathlib.Path, repository: str, tags: Iterable[str]
) -> list[str]:
    """Push the layout's `tags` missing from `storage` into `repository`; returns the tags pushed.

    The pushes go through a temporary registry on a free port without notifications (the port is not
    part of what the storage keeps), so nothing is told about them. Call it while no other registry
    uses `storage`.
    """
    missing = sorted(set(tags) - stored_tags(storage, repository))
    if not missing:
        return []
    async with LocalRegistry(workdir, storage=storage) as registry:
        for tag in missing:
            await registry.push(layout, tag, repository)
    return missing

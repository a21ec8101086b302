"""A real container registry for tests: CNCF Distribution (Debian's `docker-registry`) plus helpers.

Pieces (each usable alone; `running_registry()` wires them together):

- `build_image(dir, tag)` / `build_index(dir, tag)`: write small OCI image layouts from Python (a random
  gzip layer, a config blob, a manifest; an index of two platform manifests) and return the digests of
  the bytes written, so tests know the expected digests independently of any registry.
- `skopeo_push(layout, host, repository, tag)`: push a layout with Debian's skopeo (isolated from $HOME).
- `NotificationReceiver`: an aiohttp endpoint collecting the registry's notification envelopes.
- `TokenServer`: an OCI/Docker token service issuing JWTs (ES256, x5c chain) that the registry's
  `auth.token` config trusts through `rootcertbundle`.
- `RegistryServer`: the `docker-registry serve CONFIG` process on a free loopback port, with a temp
  storage dir and a generated config.yml (optional notifications endpoints, htpasswd or token auth).
- `write_registries_file(path, registry, ...)`: a CONVEYOR_REGISTRIES_FILE for Conveyor's services.

The OCI layout writer, skopeo, the notification endpoint entry and the base registry config are the
product's (`conveyor_sandbox.images` / `conveyor_sandbox.registry`, what `make run` uses); this module
adds random images, auth (htpasswd, token service) and a synchronous registry process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import datetime as dt
import gzip
import io
import json
import os
import pathlib
import secrets
import shutil
import signal
import subprocess
import tarfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Self

import yaml
from aiohttp import web

from conveyor_sandbox.images import (
    OCI_INDEX,
    OCI_LAYER_GZIP,
    OCI_MANIFEST,
    Descriptor,
    OciLayout,
    canonical_json,
    sha256_digest,
    skopeo_copy,
    write_image,
)
from conveyor_sandbox.registry import NotificationEndpoint, registry_config
from tests.support.net import free_port, wait_port

NOTIFICATION_MEDIA_TYPE = "application/vnd.docker.distribution.events.v1+json"
REGISTRY_BINARY = "/usr/bin/docker-registry"


# --------------------------------------------------------------------------------------------------
# OCI image layouts
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BuiltImage:
    """An OCI layout directory holding one tagged image (a manifest or an index)."""

    layout: pathlib.Path
    tag: str
    media_type: str  # OCI_MANIFEST or OCI_INDEX
    digest: str  # sha256 of `manifest_bytes`: what a registry must report for the tag
    manifest_bytes: bytes
    blobs: tuple[Descriptor, ...]  # every layer and config blob (what the registry sees pushed as blobs)
    children: tuple[Descriptor, ...] = ()  # for an index: the platform manifests


def _random_layer(size: int) -> tuple[bytes, str]:
    """A gzip tar with one file of random bytes -> (compressed bytes, diff id of the uncompressed tar)."""
    payload = secrets.token_bytes(size)
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("payload.bin")
        info.size = len(payload)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(payload))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), sha256_digest(tar_bytes)


def _write_platform_manifest(
    layout: OciLayout, architecture: str, os_name: str, layer_size: int
) -> tuple[Descriptor, bytes, list[Descriptor]]:
    layer_bytes, diff_id = _random_layer(layer_size)
    written = write_image(
        layout,
        layer_bytes,
        diff_id=diff_id,
        layer_media_type=OCI_LAYER_GZIP,
        architecture=architecture,
        os_name=os_name,
        config={"Cmd": ["/payload.bin"]},
        platform=True,
    )
    return written.descriptor, written.manifest_bytes, list(written.blobs)


def build_image(
    directory: pathlib.Path, tag: str = "latest", *, architecture: str = "amd64", layer_size: int = 1024
) -> BuiltImage:
    """A single-platform image (random layer, so every call yields a new digest) tagged `tag`."""
    layout = OciLayout(directory)
    descriptor, manifest_bytes, blobs = _write_platform_manifest(layout, architecture, "linux", layer_size)
    layout.tag(dataclasses.replace(descriptor, platform=None), tag)
    return BuiltImage(directory, tag, OCI_MANIFEST, descriptor.digest, manifest_bytes, tuple(blobs))


def build_index(
    directory: pathlib.Path,
    tag: str = "latest",
    *,
    architectures: Sequence[str] = ("amd64", "arm64"),
    layer_size: int = 1024,
) -> BuiltImage:
    """A multi-arch image: an OCI index of one manifest per architecture, tagged `tag`."""
    layout = OciLayout(directory)
    children: list[Descriptor] = []
    blobs: list[Descriptor] = []
    for architecture in architectures:
        descriptor, _, platform_blobs = _write_platform_manifest(layout, architecture, "linux", layer_size)
        children.append(descriptor)
        blobs.extend(platform_blobs)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [child.to_json() for child in children]}
    index_bytes = canonical_json(index)
    descriptor = layout.put(index_bytes, OCI_INDEX)
    layout.tag(descriptor, tag)
    return BuiltImage(directory, tag, OCI_INDEX, descriptor.digest, index_bytes, tuple(blobs), tuple(children))


# --------------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------------


async def skopeo_push(
    image: BuiltImage,
    host: str,
    repository: str,
    tag: str | None = None,
    *,
    creds: tuple[str, str] | None = None,
    workdir: pathlib.Path | None = None,
    timeout: float = 60.0,
) -> None:
    """`skopeo copy oci:LAYOUT:TAG docker://HOST/REPO:TAG` (all platforms of an index, no TLS)."""
    workdir = workdir or image.layout.parent / f".skopeo-{secrets.token_hex(4)}"
    await skopeo_copy(
        image.layout, image.tag, host, repository, tag or image.tag, workdir=workdir, creds=creds, timeout=timeout
    )


# --------------------------------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ReceivedEnvelope:
    """One POST the registry made to the notification endpoint."""

    headers: Mapping[str, str]
    body: bytes
    accepted: bool  # False when the receiver answered 401 (wrong Authorization header)

    @property
    def envelope(self) -> dict[str, Any]:
        return json.loads(self.body)

    @property
    def events(self) -> list[dict[str, Any]]:
        return list(self.envelope.get("events") or [])


class _LoopbackHttpServer:
    """An aiohttp app on a free loopback port; subclasses add their routes in `_routes`."""

    def __init__(self) -> None:
        self.port = free_port()
        self._runner: web.AppRunner | None = None

    def _routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> Self:
        app = web.Application()
        self._routes(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class NotificationReceiver(_LoopbackHttpServer):
    """An aiohttp endpoint on a free loopback port that records every notification envelope.

    With `authorization` set it answers 401 to requests without exactly that header (like a
    real receiver would); the registry then retries, which tests can observe.
    """

    def __init__(self, *, authorization: str | None = None, path: str = "/events") -> None:
        super().__init__()
        self.authorization = authorization
        self.path = path
        self.received: list[ReceivedEnvelope] = []
        self._changed = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_post(self.path, self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        accepted = self.authorization is None or request.headers.get("Authorization") == self.authorization
        async with self._changed:
            self.received.append(ReceivedEnvelope(dict(request.headers), body, accepted))
            self._changed.notify_all()
        return web.Response(status=200 if accepted else 401)

    def events(self, *, action: str | None = None, repository: str | None = None) -> list[dict[str, Any]]:
        """Events of accepted envelopes, in arrival order, optionally filtered."""
        found = []
        for received in self.received:
            if not received.accepted:
                continue
            for event in received.events:
                if action is not None and event.get("action") != action:
                    continue
                if repository is not None and event.get("target", {}).get("repository") != repository:
                    continue
                found.append(event)
        return found

    async def wait_for(
        self, predicate: Callable[[NotificationReceiver], bool], timeout: float = 20.0
    ) -> list[ReceivedEnvelope]:
        """Wait until `predicate(self)` holds; returns what was received so far."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: predicate(self)), timeout)
        return list(self.received)

    async def wait_for_manifest_push(self, repository: str, tag: str, timeout: float = 20.0) -> dict[str, Any]:
        """The `push` event of the tagged manifest (the event a deploy should come from)."""

        def pushed(receiver: NotificationReceiver) -> bool:
            return any(
                e.get("target", {}).get("tag") == tag for e in receiver.events(action="push", repository=repository)
            )

        await self.wait_for(pushed, timeout)
        return next(
            e for e in self.events(action="push", repository=repository) if e.get("target", {}).get("tag") == tag
        )


# --------------------------------------------------------------------------------------------------
# Token service (the registry's `auth.token`)
# --------------------------------------------------------------------------------------------------


class TokenServer(_LoopbackHttpServer):
    """A Docker/OCI token service: `GET realm?service=&scope=` (Basic auth optional) -> signed JWT.

    Users are `{name: password}`. An authenticated user gets pull+push on the repositories matching
    its `grants` prefixes (every repository when it has no entry there); anonymous callers get pull
    on repositories matching `anonymous_pull` prefixes (none by default). A token without the access
    a request needs makes the registry answer 401 with `error="insufficient_scope"`. Tokens are ES256
    JWTs whose `x5c` header carries a self-signed certificate; the registry trusts it through
    `rootcertbundle`.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        users: Mapping[str, str],
        *,
        service: str = "conveyor-test-registry",
        issuer: str = "conveyor-test-token-issuer",
        expires_in: int = 300,
        anonymous_pull: Sequence[str] = (),
        grants: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__()
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        self.users = dict(users)
        self.service = service
        self.issuer = issuer
        self.expires_in = expires_in
        self.anonymous_pull = tuple(anonymous_pull)
        self.grants = {user: tuple(prefixes) for user, prefixes in (grants or {}).items()}
        self.requests: list[dict[str, Any]] = []  # {"account", "scopes", "status"} per token request

        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "conveyor test token signer")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )
        self._x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        workdir.mkdir(parents=True, exist_ok=True)
        self.rootcertbundle = workdir / "token-signer.crt"
        self.rootcertbundle.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def to_config(self) -> dict[str, Any]:
        return {
            "realm": self.realm,
            "service": self.service,
            "issuer": self.issuer,
            "rootcertbundle": str(self.rootcertbundle),
        }

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/token", self._handle)

    def _account(self, request: web.Request) -> tuple[str | None, bool]:
        """(account, credentials ok); (None, True) for anonymous requests."""
        header = request.headers.get("Authorization", "")
        if not header:
            return None, True
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return None, False
        try:
            username, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None, False
        ok = username in self.users and secrets.compare_digest(self.users[username], password)
        return username, ok

    def _grant(self, account: str | None, scope: str) -> dict[str, Any] | None:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            return None
        wanted = [a for a in actions.split(",") if a]
        if account is not None:
            prefixes = self.grants.get(account)
            permitted = prefixes is None or any(name.startswith(prefix) for prefix in prefixes)
            allowed = [a for a in wanted if a in {"pull", "push", "delete", "*"}] if permitted else []
        elif any(name.startswith(prefix) for prefix in self.anonymous_pull):
            allowed = [a for a in wanted if a == "pull"]
        else:
            allowed = []
        return {"type": "repository", "name": name, "actions": allowed}

    async def _handle(self, request: web.Request) -> web.Response:
        import jwt

        account, ok = self._account(request)
        scopes = request.query.getall("scope", [])
        self.requests.append({"account": account, "scopes": scopes, "status": 200 if ok else 401})
        if not ok or request.query.get("service") != self.service:
            return web.json_response({"details": "invalid credentials or service"}, status=401)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": account or "",
            "aud": self.service,
            "exp": now + self.expires_in,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": [grant for grant in (self._grant(account, s) for s in scopes) if grant is not None],
        }
        token = jwt.encode(claims, self._key, algorithm="ES256", headers={"x5c": [self._x5c]})
        issued = dt.datetime.fromtimestamp(now, dt.UTC).isoformat().replace("+00:00", "Z")
        return web.json_response(
            {"token": token, "access_token": token, "expires_in": self.expires_in, "issued_at": issued}
        )


# --------------------------------------------------------------------------------------------------
# The registry process
# --------------------------------------------------------------------------------------------------


def htpasswd_lines(users: Mapping[str, str]) -> str:
    import bcrypt

    # Cost 5 keeps per-request verification cheap in tests; the registry accepts any bcrypt cost.
    return "".join(
        f"{name}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()}\n"
        for name, password in users.items()
    )


class RegistryServer:
    """`docker-registry serve CONFIG` on a free loopback port (plain HTTP) with its own storage dir.

    `htpasswd` ({user: password}) enables basic auth; `token` (a started `TokenServer`) enables token
    auth; `notifications` configures `notifications.endpoints`. `start()` blocks until `/v2/` answers.
    """

    def __init__(
        self,
        workdir: pathlib.Path,
        *,
        port: int | None = None,
        notifications: Sequence[NotificationEndpoint] = (),
        htpasswd: Mapping[str, str] | None = None,
        token: TokenServer | None = None,
    ) -> None:
        if htpasswd is not None and token is not None:
            raise ValueError("choose htpasswd or token auth, not both")
        self.workdir = workdir
        self.port = port or free_port()
        self.notifications = tuple(notifications)
        self.htpasswd = dict(htpasswd) if htpasswd is not None else None
        self.token = token
        self.config_path = workdir / "config.yml"
        self.log_path = workdir / "registry.log"
        self.storage = workdir / "storage"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`: the registry part of image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def config(self) -> dict[str, Any]:
        config = registry_config(
            address=self.host, storage=self.storage, secret=secrets.token_hex(16), notifications=self.notifications
        )
        if self.htpasswd is not None:
            path = self.workdir / "htpasswd"
            path.write_text(htpasswd_lines(self.htpasswd))
            config["auth"] = {"htpasswd": {"realm": "conveyor-test", "path": str(path)}}
        if self.token is not None:
            config["auth"] = {"token": self.token.to_config()}
        return config

    def start(self, timeout: float = 15.0) -> RegistryServer:
        if shutil.which(REGISTRY_BINARY) is None:
            raise RuntimeError(f"{REGISTRY_BINARY} not found: install the Debian package docker-registry")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [REGISTRY_BINARY, "serve", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.workdir)},
        )
        log.close()
        try:
            wait_port(self.port, timeout)
        except TimeoutError:
            self.kill()
            raise RuntimeError(f"docker-registry did not listen on {self.host}; log:\n{self.log()[-4000:]}") from None
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    async def push(
        self, image: BuiltImage, repository: str, tag: str | None = None, *, creds: tuple[str, str] | None = None
    ) -> None:
        """Push `image` as REPOSITORY:TAG (default: the tag it was built with) with skopeo."""
        await skopeo_push(image, self.host, repository, tag, creds=creds, workdir=self.workdir / "skopeo")


def write_registries_file(
    path: pathlib.Path, registry: RegistryServer, *, username: str | None = None, password: str | None = None
) -> pathlib.Path:
    """Write a CONVEYOR_REGISTRIES_FILE reaching `registry` over plain http, with Basic credentials
    (password in a 0600 file next to it) when given. Returns `path`."""
    entry: dict[str, Any] = {"host": registry.host, "scheme": "http"}
    if username is not None:
        password_file = path.with_name(path.stem + "-password")
        password_file.write_text(password or "")
        password_file.chmod(0o600)
        entry |= {"username": username, "password_file": str(password_file)}
    path.write_text(yaml.safe_dump({"registries": [entry]}, sort_keys=False))
    return path


@contextlib.asynccontextmanager
async def running_registry(
    workdir: pathlib.Path,
    *,
    notifications: Sequence[NotificationEndpoint] = (),
    htpasswd: Mapping[str, str] | None = None,
    token_users: Mapping[str, str] | None = None,
    token_grants: Mapping[str, Sequence[str]] | None = None,
) -> AsyncIterator[RegistryServer]:
    """A started registry (and its token server when `token_users` is given), stopped on exit.

    `server.token` is then the `TokenServer` (its `.requests` record every token request).
    """
    token = None
    if token_users is not None:
        token = await TokenServer(workdir / "token", token_users, grants=token_grants).start()
    server = RegistryServer(workdir, notifications=notifications, htpasswd=htpasswd, token=token)
    try:
        server.start()
        yield server
    finally:
        server.kill()
        if token is not None:
            await token.stop()


# --------------------------------------------------------------------------------------------------
# Real payload capture: `python -m tests.support.registry capture tests/support/webhook_payloads`
# --------------------------------------------------------------------------------------------------

CAPTURED_PAYLOADS = {
    "tagged": "distribution_real_tagged_push.json",
    "index": "distribution_real_index_push.json",
}


async def capture_real_payloads(workdir: pathlib.Path, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Push a single-arch image and a multi-arch index to a real registry and save the envelope of
    each tagged-manifest notification exactly as the registry sent it (bytes re-indented only)."""
    async with NotificationReceiver() as receiver:
        endpoint = NotificationEndpoint(receiver.url, headers={"Authorization": "Bearer example-webhook-secret"})
        # With basic auth, as most real registries run: the events then name the pushing actor.
        users = {"ci-bot": secrets.token_urlsafe(12)}
        creds = next(iter(users.items()))
        async with running_registry(workdir / "registry", notifications=[endpoint], htpasswd=users) as registry:
            image = build_image(workdir / "image", "v1.2.3")
            index = build_index(workdir / "index", "v2.0.0")
            await registry.push(image, "team/app", creds=creds)
            await receiver.wait_for_manifest_push("team/app", "v1.2.3")
            await registry.push(index, "team/multiarch", creds=creds)
            await receiver.wait_for_manifest_push("team/multiarch", "v2.0.0")
    return _write_payloads(receiver, out_dir)


def _write_payloads(receiver: NotificationReceiver, out_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, pathlib.Path] = {}
    for kind, repository, tag in (("tagged", "team/app", "v1.2.3"), ("index", "team/multiarch", "v2.0.0")):
        envelope = next(
            r.envelope
            for r in receiver.received
            if any(e.get("action") == "push" and e["target"].get("tag") == tag for e in r.events)
            and r.events[0]["target"]["repository"] == repository
        )
        path = out_dir / CAPTURED_PAYLOADS[kind]
        path.write_text(json.dumps(envelope, indent=2) + "\n")
        written[kind] = path
    return written


def _main(argv: Sequence[str]) -> int:
    import sys
    import tempfile

    if len(argv) != 2 or argv[0] != "capture":
        print("usage: python -m tests.support.registry capture OUT_DIR", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as workdir:
        written = asyncio.run(capture_real_payloads(pathlib.Path(workdir), pathlib.Path(argv[1])))
    for path in written.values():
        print(path)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(_main(sys.argv[1:]))

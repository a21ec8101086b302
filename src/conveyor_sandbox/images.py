"""OCI image layouts written from Python, and pushing them with skopeo.

`make run`'s local registry starts with a few demo images of `demo/web`; they are built here as one
OCI image layout (the directory format `skopeo copy oci:DIR:REF ...` reads) holding one tiny image per
tag. The demo images are deterministic: the same tag always has the same digest, so a rebuilt layout
matches what the registry already stores and tests know the digests without asking the registry.

`OciLayout` and `write_image` are the building blocks (the tests build random images with them too);
`skopeo_copy` pushes a layout's image with Debian's skopeo, isolated from the user's auth files and
registries.conf.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pathlib
import shlex
import tarfile
from collections.abc import Mapping, Sequence
from typing import Any

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"

# The demo repository `make run` seeds: tags pushed at start-up, and the one the banner pushes.
DEMO_REPOSITORY = "demo/web"
DEMO_SEEDED_TAGS = ("v1.0.0", "v1.1.0", "v1.1.0-broken")
DEMO_NEXT_TAG = "v1.2.0"
DEMO_TAGS = (*DEMO_SEEDED_TAGS, DEMO_NEXT_TAG)


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


@dataclasses.dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Mapping[str, str] | None = None

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.platform:
            value["platform"] = dict(self.platform)
        return value


class OciLayout:
    """An OCI image layout directory: content-addressed blobs plus an index.json naming the tagged ones."""

    def __init__(self, directory: pathlib.Path) -> None:
        self.directory = directory
        self._refs: dict[str, Descriptor] = {}
        (directory / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        (directory / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))

    def put(self, data: bytes, media_type: str, platform: Mapping[str, str] | None = None) -> Descriptor:
        digest = sha256_digest(data)
        (self.directory / "blobs" / "sha256" / digest.removeprefix("sha256:")).write_bytes(data)
        return Descriptor(media_type, digest, len(data), platform)

    def tag(self, descriptor: Descriptor, ref: str) -> None:
        """Name `descriptor` `ref` in index.json (with the refs tagged before through this object)."""
        self._refs[ref] = descriptor
        manifests = [d.to_json() | {"annotations": {REF_NAME: name}} for name, d in self._refs.items()]
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}
        temporary = self.directory / "index.json.tmp"
        temporary.write_bytes(canonical_json(index))
        temporary.replace(self.directory / "index.json")


@dataclasses.dataclass(frozen=True)
class WrittenImage:
    descriptor: Descriptor  # of the manifest
    manifest_bytes: bytes
    blobs: tuple[Descriptor, ...]  # the layer and the config


def write_image(
    layout: OciLayout,
    layer: bytes,
    *,
    diff_id: str,
    layer_media_type: str = OCI_LAYER_GZIP,
    architecture: str = "amd64",
    os_name: str = "linux",
    config: Mapping[str, Any] | None = None,
    platform: bool = False,
) -> WrittenImage:
    """One single-layer image: the layer, a config blob and the manifest (its descriptor carries the
    platform when `platform`, as an index's entries do)."""
    layer_descriptor = layout.put(layer, layer_media_type)
    image_config = {
        "architecture": architecture,
        "os": os_name,
        "created": "2026-01-01T00:00:00Z",
        "config": dict(config or {}),
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }
    config_descriptor = layout.put(canonical_json(image_config), OCI_CONFIG)
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config_descriptor.to_json(),
        "layers": [layer_descriptor.to_json()],
    }
    manifest_bytes = canonical_json(manifest)
    descriptor = layout.put(
        manifest_bytes, OCI_MANIFEST, {"architecture": architecture, "os": os_name} if platform else None
    )
    return WrittenImage(descriptor, manifest_bytes, (layer_descriptor, config_descriptor))


def tar_of(files: Mapping[str, bytes]) -> bytes:
    """A tar of `files` with fixed metadata (same input, same bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            info.mtime = 0
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def build_demo_layout(directory: pathlib.Path, tags: Sequence[str] = DEMO_TAGS) -> dict[str, str]:
    """The demo images, one per tag, in one layout at `directory`; returns {tag: manifest digest}."""
    layout = OciLayout(directory)
    digests: dict[str, str] = {}
    for tag in tags:
        tar = tar_of({"srv/demo-web/VERSION": f"{DEMO_REPOSITORY} {tag}\n".encode()})
        # Compressed here: skopeo would gzip a plain tar layer on push, and the digests would differ from ours.
        layer = gzip.compress(tar, mtime=0)
        config = {"Cmd": ["/srv/demo-web/VERSION"], "Labels": {"org.opencontainers.image.version": tag}}
        written = write_image(layout, layer, diff_id=sha256_digest(tar), config=config)
        layout.tag(written.descriptor, tag)
        digests[tag] = written.descriptor.digest
    return digests


# --------------------------------------------------------------------------------------------------
# skopeo
# --------------------------------------------------------------------------------------------------

SKOPEO = "skopeo"


class SkopeoError(RuntimeError):
    pass


def skopeo_env(home: pathlib.Path) -> dict[str, str]:
    """Keep skopeo away from the user's home, auth files and registries.conf."""
    for sub in ("home", "config", "runtime"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    (home / "runtime").chmod(0o700)
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home / "home"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_RUNTIME_DIR": str(home / "runtime"),
        "REGISTRY_AUTH_FILE": str(home / "auth.json"),
        "TMPDIR": str(home),
    }


def push_command(layout: str, ref: str, host: str, repository: str, tag: str) -> str:
    """The `skopeo copy` line a person types to push a layout's image to a plain-HTTP registry."""
    return shlex.join(
        ["skopeo", "copy", "--dest-tls-verify=false", f"oci:{layout}:{ref}", f"docker://{host}/{repository}:{tag}"]
    )


def _write_policy(workdir: pathlib.Path) -> pathlib.Path:
    """A signature policy accepting anything (the images are our own), instead of the system's."""
    workdir.mkdir(parents=True, exist_ok=True)
    policy = workdir / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    return policy


async def skopeo_copy(
    layout: pathlib.Path,
    ref: str,
    host: str,
    repository: str,
    tag: str | None = None,
    *,
    workdir: pathlib.Path,
    creds: tuple[str, str] | None = None,
    timeout: float = 60.0,
) -> None:
    """`skopeo copy oci:LAYOUT:REF docker://HOST/REPOSITORY:TAG` (all platforms of an index, no TLS)."""
    # A few bytes written before the subprocess starts: not worth a thread.
    policy = _write_policy(workdir)
    args = [SKOPEO, "--policy", str(policy), "copy", "--all", "--dest-tls-verify=false", "--retry-times=0"]
    args += ["--dest-creds", f"{creds[0]}:{creds[1]}"] if creds else ["--dest-no-creds"]
    args += [f"oci:{layout}:{ref}", f"docker://{host}/{repository}:{tag or ref}"]
    try:
        process = await asyncio.create_subprocess_exec(
            *args, env=skopeo_env(workdir), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
    except FileNotFoundError:
        raise SkopeoError("skopeo not found: install the Debian package skopeo (apt-get install skopeo)") from None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise SkopeoError(f"skopeo copy to {host}/{repository} timed out after {timeout:g}s") from None
    if process.returncode != 0:
        shown = " ".join(f"{creds[0]}:***" if creds and arg == f"{creds[0]}:{creds[1]}" else arg for arg in args)
        raise SkopeoError(f"{shown} failed ({process.returncode}):\n{output.decode(errors='replace')}")

"""Image references: registry hosts, repository paths, tags and digests.

Hosts compare case-insensitively (DNS) and Docker Hub has several aliases; repository
paths are lowercase by the distribution spec, so they compare exactly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

DOCKER_HUB = "docker.io"
_DOCKER_HUB_ALIASES = {
    "docker.io",
    "index.docker.io",
    "registry-1.docker.io",
    "registry.hub.docker.com",
    "hub.docker.com",
}

# From the distribution reference grammar.
TAG_PATTERN = re.compile(r"^[\w][\w.-]{0,127}$", re.ASCII)
DIGEST_PATTERN = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY_PATTERN = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_HOST_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
HOST_PATTERN = re.compile(rf"^(?:{_HOST_COMPONENT}(?:\.{_HOST_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]{{1,5}})?$")


def _strip_scheme(value: str) -> str:
    for scheme in ("https://", "http://"):
        if value.lower().startswith(scheme):
            return value[len(scheme) :]
    return value


def _is_host(component: str) -> bool:
    """Whether the first component of a reference names a registry (a dot or a port, or localhost)."""
    return "." in component or ":" in component or component == "localhost"


def normalize_registry(host: str) -> str:
    """Canonical form of a registry host: lowercase, no scheme or trailing slash, Hub aliases folded."""
    value = _strip_scheme(host.strip())
    value = value.rstrip("/").lower()
    if value in _DOCKER_HUB_ALIASES:
        return DOCKER_HUB
    return value


def normalize_repository(registry: str, repository: str) -> str:
    """Docker Hub's official images live under `library/`."""
    value = repository.strip().strip("/")
    if normalize_registry(registry) == DOCKER_HUB and "/" not in value:
        return f"library/{value}"
    return value


def split_host(reference: str) -> tuple[str, str]:
    """`[http(s)://]host[:port]/rest` -> (host as written, rest); ("", reference) when it names no host.

    For references and URLs in registry payloads: `team/app` is a path (on whatever registry the
    caller defaults to), `registry.example.com/team/app` and `http://localhost:5000/v2/...` name one.
    """
    value = _strip_scheme(reference.strip())
    first, sep, rest = value.partition("/")
    if sep and _is_host(first):
        return first, rest
    return "", value


class Repo(NamedTuple):
    registry: str
    repository: str


def normalize_repo(registry: str, repository: str) -> Repo:
    """The one canonical spelling of a registry host + repository pair, for every edge to use.

    Host as `normalize_registry`; repository without surrounding spaces or slashes, official Docker
    Hub images under `library/`. An empty part stays empty (callers report it as missing); nothing
    is validated (`is_valid_registry` / `is_valid_repository` do that).
    """
    host = normalize_registry(registry)
    path = repository.strip().strip("/")
    return Repo(host, normalize_repository(host, path) if path else "")


def is_valid_registry(host: str) -> bool:
    return bool(HOST_PATTERN.match(host)) and len(host) <= 255


def is_valid_repository(repository: str) -> bool:
    return bool(REPOSITORY_PATTERN.match(repository)) and len(repository) <= 255


def is_valid_tag(tag: str) -> bool:
    return bool(TAG_PATTERN.match(tag))


def is_valid_digest(digest: str) -> bool:
    return bool(DIGEST_PATTERN.match(digest))


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str = ""
    digest: str = ""

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def image_ref(registry: str, repository: str, tag: str, digest: str = "", *, pin_digest: bool = False) -> str:
    """The reference a container should run: `host/repo:tag`, or `host/repo:tag@digest` when pinned."""
    return str(ImageRef(registry, repository, tag, digest if pin_digest else ""))


def parse_image(reference: str) -> ImageRef:
    """Split `host[:port]/repo[:tag][@digest]` (Kubernetes-style, Hub defaults applied)."""
    rest, _, digest = reference.partition("@")
    first, sep, remainder = rest.partition("/")
    if sep and _is_host(first):
        registry, path = first, remainder
    else:
        registry, path = DOCKER_HUB, rest
    repository, tag = path, ""
    if ":" in path.rsplit("/", 1)[-1]:
        repository, _, tag = path.rpartition(":")
    registry = normalize_registry(registry)
    return ImageRef(registry, normalize_repository(registry, repository), tag, digest)

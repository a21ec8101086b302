"""A cluster's deploy policy: which namespaces and which images may be deployed to it (pure rules).

Globs are `fnmatch` patterns matched case-sensitively against the whole value; `*` also matches
`/`, so `registry.example.com/*` allows every repository of that registry. Images are matched
as `registry/repository`, without tag or digest.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

# Where nobody deploys applications; denied unless a policy lists namespaces itself.
SYSTEM_NAMESPACES = ("kube-system", "kube-public", "kube-node-lease")


@dataclass(frozen=True)
class Denial:
    field: str  # "namespace" or "image"
    reason: str


@dataclass(frozen=True)
class ClusterPolicy:
    # None: every namespace but SYSTEM_NAMESPACES; otherwise only those matching one glob.
    namespaces: tuple[str, ...] | None = None
    # None: every image; otherwise only `registry/repository` values matching one glob.
    images: tuple[str, ...] | None = None

    def check(self, namespace: str, image: str) -> list[Denial]:
        denials = []
        if self.namespaces is None:
            if namespace in SYSTEM_NAMESPACES:
                denials.append(
                    Denial(
                        "namespace", f"namespace {namespace!r} is a system namespace (not in the policy's namespaces)"
                    )
                )
        elif not _matches(namespace, self.namespaces):
            denials.append(
                Denial(
                    "namespace", f"namespace {namespace!r} is not allowed (namespaces: {', '.join(self.namespaces)})"
                )
            )
        repository = image_repository(image)
        if self.images is not None and not _matches(repository, self.images):
            denials.append(Denial("image", f"image {repository!r} is not allowed (images: {', '.join(self.images)})"))
        return denials


DEFAULT_POLICY = ClusterPolicy()


def _matches(value: str, globs: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(value, glob) for glob in globs)


def image_repository(image: str) -> str:
    """`registry/repository` of an image reference: without `@digest` and without `:tag`."""
    name = image.strip().split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name  # a colon before the last slash is a registry port


def denial_message(cluster: str, denials: list[Denial]) -> str:
    return f"denied by the policy of cluster {cluster}: " + "; ".join(d.reason for d in denials)

"""Kubernetes API failures: what kind they are and what to tell the user.

The adapter turns client exceptions into `KubeApiError` (status code, reason, server message,
and what was being attempted); this module decides what each means -- retry, re-read, or fail
with an actionable message. It never sees credentials.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum


class ErrorKind(Enum):
    UNAUTHORIZED = "unauthorized"  # 401: credentials rejected
    FORBIDDEN = "forbidden"  # 403: RBAC
    NOT_FOUND = "not_found"  # 404
    CONFLICT = "conflict"  # 409, or a failed JSON Patch `test`: re-read and retry
    INVALID = "invalid"  # 400/422: the request itself is wrong
    TRANSIENT = "transient"  # timeouts, connection errors, 429, 5xx: retry with backoff
    OTHER = "other"


_TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
# How the JSON Patch libraries of the apiserver (evanphx/json-patch) and others word a failed test.
_TEST_FAILED_MARKERS = ("test failed", "testing value", "not equal to test", "testoperation")


@dataclass
class KubeApiError(Exception):
    """A failed call to one cluster's API."""

    cluster: str
    verb: str  # get, list, patch (RBAC verbs)
    resource: str  # e.g. "deployments.apps", "pods", "namespaces"
    namespace: str | None
    name: str | None
    status: int | None  # None: no HTTP answer (connection refused, timeout)
    reason: str = ""
    message: str = ""
    causes: Sequence[str] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        super().__init__(self.describe())

    @property
    def kind(self) -> ErrorKind:
        return classify(self.status, self.message, self.causes)

    @property
    def target(self) -> str:
        where = f" in namespace {self.namespace}" if self.namespace else ""
        what = f"{self.resource} {self.name!r}" if self.name else self.resource
        return f"{what}{where} of cluster {self.cluster}"

    def describe(self) -> str:
        kind = self.kind
        server = f": {self.message}" if self.message else ""
        if kind is ErrorKind.FORBIDDEN:
            scope = f"in namespace {self.namespace}" if self.namespace else "cluster-wide"
            return (
                f"RBAC: the deployer is not allowed to {self.verb} {self.resource} {scope} in cluster {self.cluster} "
                f'(403 Forbidden{server}). Grant its user or service account the "{self.verb}" verb on '
                f'"{self.resource}" there.'
            )
        if kind is ErrorKind.UNAUTHORIZED:
            return (
                f"cluster {self.cluster} rejected the deployer's credentials (401 Unauthorized) while trying to "
                f"{self.verb} {self.target}: renew the token or certificate of its kubeconfig context"
            )
        if kind is ErrorKind.NOT_FOUND:
            return f"{self.target} not found (404)"
        if kind is ErrorKind.CONFLICT:
            return f"{self.target} was changed by someone else while the deployer updated it ({self.status}{server})"
        if kind is ErrorKind.TRANSIENT:
            if self.status is None:
                return f"cannot reach the API of cluster {self.cluster} to {self.verb} {self.target}{server}"
            return f"the API of cluster {self.cluster} failed to {self.verb} {self.target} ({self.status}{server})"
        details = "; ".join(self.causes)
        return f"cluster {self.cluster} refused to {self.verb} {self.target} ({self.status}{server})" + (
            f": {details}" if details else ""
        )


def is_transient(exc: BaseException) -> bool:
    """Whether a failed call is worth repeating after a backoff (the retry predicate of every Kubernetes call)."""
    return isinstance(exc, KubeApiError) and exc.kind is ErrorKind.TRANSIENT


def classify(status: int | None, message: str = "", causes: Sequence[str] = ()) -> ErrorKind:
    if status is None or status in _TRANSIENT_STATUS:
        return ErrorKind.TRANSIENT
    if status == 401:
        return ErrorKind.UNAUTHORIZED
    if status == 403:
        return ErrorKind.FORBIDDEN
    if status == 404:
        return ErrorKind.NOT_FOUND
    if status == 409:
        return ErrorKind.CONFLICT
    if status == 422:
        text = " ".join([message, *causes]).lower()
        if any(marker in text for marker in _TEST_FAILED_MARKERS):
            return ErrorKind.CONFLICT  # a `test` op no longer holds: the object moved on
        return ErrorKind.INVALID
    if status == 400:
        return ErrorKind.INVALID
    if status >= 500:
        return ErrorKind.TRANSIENT
    return ErrorKind.OTHER

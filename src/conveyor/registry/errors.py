"""The one exception the registry client raises."""

from __future__ import annotations

KINDS = ("unauthorized", "forbidden", "not_found", "unreachable", "protocol", "invalid_argument")


class RegistryError(Exception):
    """A registry operation failed; `message` says what to do about it and never contains a secret.

    kind:
      unauthorized      401: credentials missing, wrong, or rejected by the registry's token service
      forbidden         403 (or a token without the needed scope): credentials valid but not allowed
      not_found         404: the repository, tag or digest does not exist
      unreachable       connection errors, timeouts, TLS failures, 429 and 5xx after retries with backoff
      protocol          the registry answered something the distribution API does not allow
      invalid_argument  the caller passed a malformed host, repository, reference or page token
    """

    def __init__(self, kind: str, registry: str, message: str, *, status: int | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown RegistryError kind {kind!r}")
        super().__init__(message)
        self.kind = kind
        self.registry = registry
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"RegistryError(kind={self.kind!r}, registry={self.registry!r}, message={self.message!r})"

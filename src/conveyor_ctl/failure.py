"""How conveyorctl reports a failure: lines for people, one object for scripts.

Human output is `error: CODE: message` and one indented line per field violation. Under
`-o json|yaml` the same failure is one object on stderr:
`{"error": {"code", "message", "exitCode", "details"}}`, where `details` are the
google.rpc.Status details in their JSON shape (`@type`, then e.g. `fieldViolations`).
Either way each field violation appears once: the server's message repeats them, so the
headline says how many there are instead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from conveyor.errors import FieldViolation
from conveyor_ctl.client import CallError

# Exit codes (documented in `conveyorctl --help` and the README).
EXIT_OK = 0
EXIT_FAILED = 1  # the service rejected the request (or another gRPC error)
EXIT_USAGE = 2  # bad flags or input, or a needed confirmation missing or declined; nothing was changed
EXIT_NOT_FOUND = 3
EXIT_UNAVAILABLE = 4  # a service could not be reached or did not answer in time
EXIT_CONFLICT = 5  # stale etag (ABORTED) or already exists: re-read and retry
EXIT_RUN_FAILED = 6  # `pipelines start --follow`, `runs logs -f`: the run did not succeed
EXIT_INTERRUPTED = 130

# Codes of failures of the CLI itself (a service's failures carry the gRPC status name).
USAGE = "USAGE"
INTERRUPTED = "INTERRUPTED"

_EXIT_BY_CODE = {
    grpc.StatusCode.NOT_FOUND: EXIT_NOT_FOUND,
    grpc.StatusCode.UNAVAILABLE: EXIT_UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: EXIT_UNAVAILABLE,
    grpc.StatusCode.ABORTED: EXIT_CONFLICT,
    grpc.StatusCode.ALREADY_EXISTS: EXIT_CONFLICT,
}


def exit_code_for(code: grpc.StatusCode) -> int:
    return _EXIT_BY_CODE.get(code, EXIT_FAILED)


@dataclass(frozen=True)
class Failure:
    code: str
    message: str
    exit_code: int
    violations: Sequence[FieldViolation] = ()
    details: Sequence[dict[str, Any]] = field(default_factory=tuple)

    @classmethod
    def usage(cls, message: str) -> Failure:
        return cls(USAGE, message, EXIT_USAGE)

    @classmethod
    def interrupted(cls) -> Failure:
        return cls(INTERRUPTED, "interrupted", EXIT_INTERRUPTED)

    @classmethod
    def from_call(cls, error: CallError) -> Failure:
        message = " ".join(error.details.split()) or "(no message)"
        unreachable = error.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        if unreachable and not error.answered:
            endpoint = error.endpoint
            where = f"the {endpoint.label} service at {error.address} (set {endpoint.flag} or {endpoint.env})"
            verb = "cannot reach" if error.code == grpc.StatusCode.UNAVAILABLE else "no answer in time from"
            message = f"{verb} {where}: {message}"
        violations = error.violations()
        return cls(
            code=error.code.name,
            message=headline(message, violations),
            exit_code=exit_code_for(error.code),
            violations=tuple(violations),
            details=tuple(error.status_details()),
        )

    def text(self) -> str:
        if self.code == INTERRUPTED:
            return self.message
        head = f"error: {self.message}" if self.code == USAGE else f"error: {self.code}: {self.message}"
        return "\n".join([head, *(f"  {v.field}: {v.description}" for v in self.violations)])

    def data(self) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "exitCode": self.exit_code,
                "details": list(self.details),
            }
        }


class Failed(Exception):
    """A command's own failure (not a gRPC call's, e.g. NATS for `dead-letters`), reported like any other."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def headline(message: str, violations: Sequence[FieldViolation]) -> str:
    """The message without the violations it repeats, saying how many there are.

    `invalid request: a: is required; b: is too long` -> `invalid request: 2 field violations`.
    """
    if not violations:
        return message
    rest = message
    for violation in violations:
        description = " ".join(violation.description.split())
        rest = rest.replace(f"{violation.field}: {description}", "")
        if rest.strip() == description:
            rest = ""
    rest = re.sub(r"(\s*;\s*)+", "; ", rest).strip(" ;:")
    count = len(violations)
    return f"{rest or 'invalid request'}: {count} field violation{'' if count == 1 else 's'}"

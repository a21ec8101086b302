"""What a ListEvents request selects: the filters of the "why did my push not deploy?" history, pure.

Registry and repository follow the reference rules (`nginx` is `library/nginx` on Docker Hub only);
the tag is exact; a decision outcome selects the events with at least one decision of that outcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor import refs
from conveyor.errors import FieldViolation, InvalidArgument
from conveyor.v1 import event_service_pb2

Outcome = event_service_pb2.MatchDecision.Outcome


@dataclass(frozen=True)
class HistoryQuery:
    wanted: refs.Repo
    # The repository as asked: without a registry, what it means depends on each event's host.
    repository: str
    tag: str
    decision: int

    @classmethod
    def of(cls, request: event_service_pb2.ListEventsRequest) -> HistoryQuery:
        """The request's filters; InvalidArgument for a decision outcome the schema does not define."""
        if request.decision not in Outcome.values():
            known = ", ".join(Outcome.keys())
            raise InvalidArgument.from_violations(
                [FieldViolation("decision", f"{request.decision} is not a known outcome ({known})")]
            )
        return cls(
            refs.normalize_repo(request.registry, request.repository),
            request.repository,
            request.tag,
            request.decision,
        )

    def fingerprint_parts(self) -> tuple[str, ...]:
        """What a page token is bound to (the same filter however it is spelled)."""
        parts: tuple[str, ...] = ("events", self.wanted.registry, self.wanted.repository)
        if self.tag or self.decision:
            parts += (self.tag, Outcome.Name(self.decision))
        return parts

    def selects(self, event: event_service_pb2.RegistryEvent) -> bool:
        push = event.push
        if self.tag and push.tag != self.tag:
            return False
        if self.decision and not any(d.outcome == self.decision for d in event.decisions):
            return False
        if self.wanted.registry and push.registry != self.wanted.registry:
            return False
        if not self.wanted.repository:
            return True
        if self.wanted.registry:
            return push.repository == self.wanted.repository
        return push.repository == refs.normalize_repo(push.registry, self.repository).repository

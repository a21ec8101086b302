"""The page_size policy of every List method (AIP-158).

- negative: INVALID_ARGUMENT on `page_size`;
- 0 (unset): the method's default;
- above the maximum: the maximum (clamped, not an error).
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.errors import FieldViolation, InvalidArgument

# The config service's ListPipelines / ListRuns figures, shared by most List methods.
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class PageSizePolicy:
    """A method's default and maximum page size; ValueError unless 1 <= default <= maximum."""

    default: int = DEFAULT_PAGE_SIZE
    maximum: int = MAX_PAGE_SIZE

    def __post_init__(self) -> None:
        if not 1 <= self.default <= self.maximum:
            raise ValueError(f"page sizes need 1 <= default <= maximum (got {self.default}, {self.maximum})")

    def resolve(self, requested: int) -> int:
        """The page size to serve for a request's `page_size`."""
        if requested < 0:
            raise InvalidArgument.from_violations([FieldViolation("page_size", "must not be negative")])
        if requested == 0:
            return self.default
        return min(requested, self.maximum)


DEFAULT_POLICY = PageSizePolicy()


def page_size(requested: int, policy: PageSizePolicy = DEFAULT_POLICY) -> int:
    """`policy.resolve(requested)`; the default policy is 50, at most 1000."""
    return policy.resolve(requested)

"""A pipeline's tag filter: which tags it deploys (RE2, so a user's expression cannot stall the service)."""

from __future__ import annotations

from typing import Any

import re2

from conveyor.v1 import pipeline_pb2

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False


def compile_tag_regex(expression: str) -> Any:
    """Compile a user's tag filter with RE2; raises ValueError carrying the compiler's message."""
    try:
        return re2.compile(expression, options=_RE2_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else str(exc)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise ValueError(str(detail)) from None


def tag_matches(tag_filter: pipeline_pb2.TagFilter, tag: str) -> bool:
    """Whether `tag` passes a (valid) tag filter; REGEX must match the whole tag."""
    if tag_filter.type == pipeline_pb2.TagFilter.EXACT:
        return tag == tag_filter.value
    if tag_filter.type == pipeline_pb2.TagFilter.REGEX:
        return compile_tag_regex(tag_filter.value).fullmatch(tag) is not None
    return True

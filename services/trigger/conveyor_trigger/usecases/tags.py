"""EventService.ListTags: the tags of a pipeline's repository (or of a registry/repository).

The registry's own paging cursor travels inside a `conveyor.aip` page token, signed and bound to
the repository listed, so a client can neither forge one nor replay it against another repository.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from conveyor import refs
from conveyor.aip.page_tokens import PageTokenCodec, fingerprint
from conveyor.aip.paging import PageSizePolicy, page_size
from conveyor.errors import (
    ConveyorError,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from conveyor.names import parse_pipeline_name
from conveyor.v1 import event_service_pb2
from conveyor_trigger.domain.matching import PipelineIndex
from conveyor_trigger.usecases.ports import DigestResolver, TagLister

log = logging.getLogger(__name__)

PAGE_SIZES = PageSizePolicy(default=100)


def registry_error(exc: Exception, registry: str, repository: str) -> ConveyorError:
    """Map a registry client failure (`kind` per conveyor.registry.RegistryError) to our errors."""
    kind = getattr(exc, "kind", "")
    message = getattr(exc, "message", "") or str(exc) or type(exc).__name__
    metadata = {"registry": registry, "repository": repository}
    if kind in {"unauthorized", "forbidden"}:
        return FailedPrecondition(
            f"registry {registry} refused access to {repository}: {message}",
            reason=f"REGISTRY_{kind.upper()}",
            metadata=metadata,
        )
    if kind == "invalid_argument":
        field_name = "page_token" if "page token" in message else "repository"
        return InvalidArgument(message, [FieldViolation(field_name, message)])
    if kind == "not_found":
        return NotFound(f"{registry}/{repository}: {message}", reason="REGISTRY_NOT_FOUND", metadata=metadata)
    return Unavailable(
        f"registry {registry} cannot be used right now: {message}", reason="REGISTRY_UNAVAILABLE", metadata=metadata
    )


async def list_tags(
    request: event_service_pb2.ListTagsRequest,
    *,
    index: Callable[[], PipelineIndex],
    cache_loaded: Callable[[], bool],
    lister: TagLister | None,
    resolver: DigestResolver | None,
    codec: PageTokenCodec,
    digest_concurrency: int = 8,
) -> event_service_pb2.ListTagsResponse:
    registry, repository = _target(request, index, cache_loaded)
    size = page_size(request.page_size, PAGE_SIZES)
    query = fingerprint("tags", registry, repository)
    registry_token = codec.decode(request.page_token, query, (str,))[0] if request.page_token else ""
    if lister is None:
        raise FailedPrecondition(
            "listing tags needs registry access, which is not configured on this trigger",
            reason="REGISTRY_CLIENT_MISSING",
        )
    try:
        tags, next_token = await lister.list_tags(registry, repository, page_size=size, page_token=registry_token)
    except ConveyorError:
        raise
    except Exception as exc:
        raise registry_error(exc, registry, repository) from exc

    digests = [""] * len(tags)
    if request.include_digests:
        if resolver is None:
            raise FailedPrecondition(
                "resolving digests needs registry access, which is not configured on this trigger",
                reason="REGISTRY_CLIENT_MISSING",
            )
        semaphore = asyncio.Semaphore(digest_concurrency)

        async def resolve(position: int, tag: str) -> None:
            async with semaphore:
                try:
                    digests[position] = await resolver.resolve_digest(registry, repository, tag)
                except Exception as exc:
                    # One unreadable tag must not hide the others; its digest stays empty.
                    log.warning(
                        "could not resolve a tag's digest",
                        extra={"registry": registry, "repository": repository, "tag": tag, "error": str(exc)},
                    )

        await asyncio.gather(*(resolve(position, tag) for position, tag in enumerate(tags)))
    return event_service_pb2.ListTagsResponse(
        tags=[event_service_pb2.ImageTag(tag=tag, digest=digest) for tag, digest in zip(tags, digests, strict=True)],
        next_page_token=codec.encode([next_token], query) if next_token else "",
    )


def _target(
    request: event_service_pb2.ListTagsRequest, index: Callable[[], PipelineIndex], cache_loaded: Callable[[], bool]
) -> tuple[str, str]:
    if request.pipeline:
        name = str(parse_pipeline_name(request.pipeline, "pipeline"))
        if request.registry or request.repository:
            raise InvalidArgument.from_violations(
                [FieldViolation("registry", "give either pipeline, or registry and repository, not both")]
            )
        pipeline = index().get(name)
        if pipeline is not None:
            return pipeline.key
        excluded = index().excluded.get(name)
        if excluded is not None and excluded.key is not None:
            return excluded.key
        if not cache_loaded():
            raise Unavailable("the pipeline list has not been loaded from the config service yet; retry shortly")
        raise NotFound(f"pipeline {name} not found", metadata={"pipeline": name})
    violations = []
    host, repository = refs.normalize_repo(request.registry, request.repository)
    if not host:
        violations.append(FieldViolation("registry", "required when pipeline is empty"))
    elif not refs.is_valid_registry(host):
        violations.append(FieldViolation("registry", f"{request.registry!r} is not a registry host[:port]"))
    if not repository:
        violations.append(FieldViolation("repository", "required when pipeline is empty"))
    elif not refs.is_valid_repository(repository):
        violations.append(FieldViolation("repository", f"{request.repository!r} is not a repository path"))
    if violations:
        raise InvalidArgument.from_violations(violations)
    return host, repository

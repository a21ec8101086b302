"""PipelineService over real gRPC (in-process server on a free port, real nats-server, SQLite)."""

from __future__ import annotations

import asyncio
import pathlib

import grpc
from google.protobuf import field_mask_pb2
from nats.aio.client import Client as NATS

from conveyor import bus
from conveyor.aip import ids
from conveyor.errors import FieldViolation, field_violations
from conveyor.v1 import bus_pb2, pipeline_pb2, pipeline_service_pb2, pipeline_service_pb2_grpc
from conveyor_config.app import ConfigApp
from tests.integration.config.conftest import Clients, StartConfig, connected, truncate_tables
from tests.integration.config.support import create_pipeline, rpc_error
from tests.support.net import eventually
from tests.unit.config.samples import CHINESE_DESCRIPTION, sample_pipeline

Code = grpc.StatusCode
Create = pipeline_service_pb2.CreatePipelineRequest
Update = pipeline_service_pb2.UpdatePipelineRequest
ListRequest = pipeline_service_pb2.ListPipelinesRequest


def mask(*paths: str) -> field_mask_pb2.FieldMask:
    return field_mask_pb2.FieldMask(paths=list(paths))


# --------------------------------------------------------------------------- create / get


async def test_create_then_get_returns_the_same_pipeline(clients: Clients) -> None:
    request = sample_pipeline(display_name="生产部署", description=CHINESE_DESCRIPTION)
    created = await clients.pipelines.CreatePipeline(Create(pipeline=request, pipeline_id="web"))
    assert created.name == "pipelines/web"
    assert created.etag and created.create_time.seconds > 0
    assert created.create_time == created.update_time
    assert created.description.encode() == CHINESE_DESCRIPTION.encode()
    assert created.options.verify_rollout is True  # defaults are made explicit
    fetched = await clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web"))
    assert fetched == created


async def test_create_generates_an_id_and_ignores_output_only_fields(clients: Clients) -> None:
    pipeline = sample_pipeline()
    pipeline.name = "pipelines/chosen-by-client"
    pipeline.etag = "forged"
    pipeline.create_time.seconds = 1
    created = await clients.pipelines.CreatePipeline(Create(pipeline=pipeline))
    pipeline_id = created.name.removeprefix("pipelines/")
    # "p" and a lowercase ULID (26 characters): a valid id, unlike a bare ULID that may start with a digit.
    assert len(pipeline_id) == 27 and pipeline_id.isalnum() and pipeline_id.startswith("p")
    ids.validate_id(pipeline_id)
    assert created.etag != "forged" and created.create_time.seconds > 1


async def test_duplicate_id_is_already_exists(clients: Clients) -> None:
    await create_pipeline(clients, "web")
    error = await rpc_error(create_pipeline(clients, "web"), Code.ALREADY_EXISTS)
    assert "pipelines/web already exists" in (error.details() or "")


async def test_invalid_pipeline_lists_every_field_violation(clients: Clients) -> None:
    bad = sample_pipeline(display_name="")
    bad.source.tag_filter.CopyFrom(pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value="v[0-9"))
    bad.target.namespace = "Prod_NS"
    bad.target.container = ""
    error = await rpc_error(
        clients.pipelines.CreatePipeline(Create(pipeline=bad, pipeline_id="9-starts-with-digit")),
        Code.INVALID_ARGUMENT,
    )
    found = {v.field: v.description for v in field_violations(error)}
    assert set(found) == {
        "pipeline_id",
        "pipeline.display_name",
        "pipeline.source.tag_filter.value",
        "pipeline.target.namespace",
        "pipeline.target.container",
    }
    assert "missing ]" in found["pipeline.source.tag_filter.value"]  # RE2's message
    assert "DNS-1123" in found["pipeline.target.namespace"]


async def test_semver_pipeline_with_an_invalid_constraint_or_exclusion_is_refused(clients: Clients) -> None:
    bad = sample_pipeline()
    bad.source.tag_filter.CopyFrom(
        pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.SEMVER, value="^1.two", exclusions=["latest", "regex:(v"])
    )
    error = await rpc_error(
        clients.pipelines.CreatePipeline(Create(pipeline=bad, pipeline_id="semver")), Code.INVALID_ARGUMENT
    )
    found = {v.field: v.description for v in field_violations(error)}
    assert set(found) == {"pipeline.source.tag_filter.value", "pipeline.source.tag_filter.exclusions[1]"}
    assert "invalid semver constraint '^1.two'" in found["pipeline.source.tag_filter.value"]
    bad.source.tag_filter.value = "~1.4.0"
    del bad.source.tag_filter.exclusions[1]
    bad.source.tag_filter.include_prereleases = True
    created = await clients.pipelines.CreatePipeline(Create(pipeline=bad, pipeline_id="semver"))
    assert created.source.tag_filter == bad.source.tag_filter  # every new field is stored


async def test_request_id_makes_create_idempotent(clients: Clients) -> None:
    request = Create(pipeline=sample_pipeline(), request_id="8b0f8d5c-2a7b-4a35-9d1e-0c6f8f0b1a11")
    first, second = await asyncio.gather(
        clients.pipelines.CreatePipeline(request), clients.pipelines.CreatePipeline(request)
    )
    third = await clients.pipelines.CreatePipeline(request)
    assert first == second == third
    listed = await clients.pipelines.ListPipelines(ListRequest())
    assert listed.total_size == 1 and [p.name for p in listed.pipelines] == [first.name]


async def test_validate_only_creates_nothing(clients: Clients) -> None:
    checked = await clients.pipelines.CreatePipeline(
        Create(pipeline=sample_pipeline(), pipeline_id="web", validate_only=True)
    )
    assert checked.name == "pipelines/web" and not checked.etag
    await rpc_error(
        clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web")), Code.NOT_FOUND
    )
    error = await rpc_error(
        clients.pipelines.CreatePipeline(Create(pipeline=sample_pipeline(display_name=""), validate_only=True)),
        Code.INVALID_ARGUMENT,
    )
    assert field_violations(error) == [FieldViolation("pipeline.display_name", "required")]
    assert (await clients.pipelines.ListPipelines(ListRequest())).total_size == 0


async def test_get_errors(clients: Clients) -> None:
    error = await rpc_error(
        clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/nope")), Code.NOT_FOUND
    )
    assert "pipelines/nope not found" in (error.details() or "")
    error = await rpc_error(
        clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="web")), Code.INVALID_ARGUMENT
    )
    assert [v.field for v in field_violations(error)] == ["name"]


# --------------------------------------------------------------------------- list


async def test_list_pages_filters_and_total_size(clients: Clients) -> None:
    for index in range(5):
        cluster = "prod" if index % 2 == 0 else "staging"
        target = sample_pipeline().target
        target.cluster = cluster
        await create_pipeline(clients, f"p{index}", target=target)

    seen: list[str] = []
    token = ""
    while True:
        page = await clients.pipelines.ListPipelines(ListRequest(page_size=2, page_token=token))
        assert page.total_size == 5
        seen += [p.name for p in page.pipelines]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"pipelines/p{i}" for i in range(5)]

    prod = await clients.pipelines.ListPipelines(
        ListRequest(filter='source.registry = "Demo.TencentCloudCR.com" AND target.cluster = "prod"')
    )
    assert [p.name for p in prod.pipelines] == ["pipelines/p0", "pipelines/p2", "pipelines/p4"]
    assert prod.total_size == 3 and not prod.next_page_token


async def test_page_tokens_are_signed_with_the_key_every_replica_shares(
    start_config: StartConfig, tmp_path: pathlib.Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    key = {"CONVEYOR_PAGE_TOKEN_KEY": "a" * 32}
    first = await start_config(database_url=url, env=key)
    second = await start_config(database_url=url, env=key)
    rotated = await start_config(database_url=url, env={"CONVEYOR_PAGE_TOKEN_KEY": f"{'b' * 32},{'a' * 32}"})
    other = await start_config(database_url=url, env={"CONVEYOR_PAGE_TOKEN_KEY": "c" * 32})
    async with (
        connected(first.address) as one,
        connected(second.address) as two,
        connected(rotated.address) as three,
        connected(other.address) as four,
    ):
        for index in range(3):
            await create_pipeline(one, f"p{index}")
        page = await one.pipelines.ListPipelines(ListRequest(page_size=1))
        assert [p.name for p in page.pipelines] == ["pipelines/p0"]
        following = await two.pipelines.ListPipelines(ListRequest(page_size=1, page_token=page.next_page_token))
        assert [p.name for p in following.pipelines] == ["pipelines/p1"]
        # A replica whose previous key is the old one still takes it; its own tokens use the new key.
        rotated_page = await three.pipelines.ListPipelines(ListRequest(page_size=1, page_token=page.next_page_token))
        assert [p.name for p in rotated_page.pipelines] == ["pipelines/p1"]
        await rpc_error(
            one.pipelines.ListPipelines(ListRequest(page_size=1, page_token=rotated_page.next_page_token)),
            Code.INVALID_ARGUMENT,
        )
        error = await rpc_error(
            four.pipelines.ListPipelines(ListRequest(page_size=1, page_token=page.next_page_token)),
            Code.INVALID_ARGUMENT,
        )
        assert [v.field for v in field_violations(error)] == ["page_token"]
        # An edited token (its cursor changed by a client) fails the signature check.
        forged = page.next_page_token[:-2] + ("AA" if not page.next_page_token.endswith("AA") else "BB")
        await rpc_error(one.pipelines.ListPipelines(ListRequest(page_token=forged)), Code.INVALID_ARGUMENT)


async def test_list_rejects_bad_filters_and_tokens(clients: Clients) -> None:
    for index in range(3):
        await create_pipeline(clients, f"p{index}")
    error = await rpc_error(clients.pipelines.ListPipelines(ListRequest(filter="owner = me")), Code.INVALID_ARGUMENT)
    [violation] = field_violations(error)
    assert violation.field == "filter" and "unknown field 'owner'" in violation.description

    page = await clients.pipelines.ListPipelines(ListRequest(page_size=1, filter='target.cluster = "prod"'))
    error = await rpc_error(
        clients.pipelines.ListPipelines(
            ListRequest(page_size=1, page_token=page.next_page_token, filter='target.cluster = "other"')
        ),
        Code.INVALID_ARGUMENT,
    )
    assert field_violations(error)[0].field == "page_token"
    await rpc_error(clients.pipelines.ListPipelines(ListRequest(page_token="not-a-token")), Code.INVALID_ARGUMENT)
    await rpc_error(clients.pipelines.ListPipelines(ListRequest(page_size=-1)), Code.INVALID_ARGUMENT)


async def test_pagination_is_stable_under_inserts(clients: Clients) -> None:
    for pipeline_id in ("b", "d", "f", "h"):
        await create_pipeline(clients, pipeline_id)
    first = await clients.pipelines.ListPipelines(ListRequest(page_size=2))
    assert [p.name for p in first.pipelines] == ["pipelines/b", "pipelines/d"]
    # New pipelines before and after the cursor: nothing repeats, nothing already there is skipped.
    for pipeline_id in ("a", "c", "e", "z"):
        await create_pipeline(clients, pipeline_id)
    rest: list[str] = []
    token = first.next_page_token
    while token:
        page = await clients.pipelines.ListPipelines(ListRequest(page_size=2, page_token=token))
        rest += [p.name for p in page.pipelines]
        token = page.next_page_token
    assert rest == ["pipelines/e", "pipelines/f", "pipelines/h", "pipelines/z"]


# --------------------------------------------------------------------------- update


async def test_update_with_mask_changes_etag_and_update_time(clients: Clients) -> None:
    created = await create_pipeline(clients, "web")
    await asyncio.sleep(0.002)
    patch = pipeline_pb2.Pipeline(name="pipelines/web", display_name="新的名字", description="ignored")
    updated = await clients.pipelines.UpdatePipeline(Update(pipeline=patch, update_mask=mask("display_name")))
    assert updated.display_name == "新的名字"
    assert updated.description == created.description
    assert updated.etag != created.etag
    assert updated.update_time.ToMicroseconds() > created.update_time.ToMicroseconds()
    assert updated.create_time == created.create_time
    fetched = await clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web"))
    assert fetched == updated


async def test_update_with_stale_etag_is_aborted(clients: Clients) -> None:
    created = await create_pipeline(clients, "web")
    first = pipeline_pb2.Pipeline(name="pipelines/web", etag=created.etag, disabled=True)
    updated = await clients.pipelines.UpdatePipeline(Update(pipeline=first, update_mask=mask("disabled")))
    assert updated.disabled
    stale = pipeline_pb2.Pipeline(name="pipelines/web", etag=created.etag, display_name="late")
    error = await rpc_error(
        clients.pipelines.UpdatePipeline(Update(pipeline=stale, update_mask=mask("display_name"))), Code.ABORTED
    )
    assert "stale" in (error.details() or "")
    current = pipeline_pb2.Pipeline(name="pipelines/web", etag=updated.etag, display_name="now")
    assert (
        await clients.pipelines.UpdatePipeline(Update(pipeline=current, update_mask=mask("display_name")))
    ).display_name == "now"


async def test_update_star_replaces_everything_but_output_only_fields(clients: Clients) -> None:
    created = await create_pipeline(clients, "web")
    replacement = sample_pipeline(display_name="Replaced", disabled=True)
    replacement.name = "pipelines/web"
    replacement.create_time.seconds = 5
    replacement.target.workload = "backend"
    updated = await clients.pipelines.UpdatePipeline(Update(pipeline=replacement, update_mask=mask("*")))
    assert (updated.display_name, updated.disabled, updated.target.workload) == ("Replaced", True, "backend")
    assert updated.create_time == created.create_time
    ignored = pipeline_pb2.Pipeline(name="pipelines/web", create_time=created.update_time)
    after = await clients.pipelines.UpdatePipeline(Update(pipeline=ignored, update_mask=mask("create_time")))
    assert after.create_time == created.create_time  # output only: ignored, not an error


async def test_update_without_a_mask_changes_only_the_fields_set(clients: Clients) -> None:
    """AIP-134: no mask means the fields the request sets (before issue 9 it meant `*`)."""
    created = await create_pipeline(clients, "web", description="kept")
    patch = pipeline_pb2.Pipeline(
        name="pipelines/web", etag=created.etag, display_name="renamed", target=pipeline_pb2.Target(workload="backend")
    )
    updated = await clients.pipelines.UpdatePipeline(Update(pipeline=patch))
    assert (updated.display_name, updated.target.workload) == ("renamed", "backend")
    assert updated.description == "kept"
    assert updated.target.cluster == created.target.cluster and updated.source == created.source
    assert updated.options == created.options and updated.etag != created.etag
    # A present but empty mask is the same as none.
    again = pipeline_pb2.Pipeline(name="pipelines/web", description="changed")
    assert (
        await clients.pipelines.UpdatePipeline(Update(pipeline=again, update_mask=mask()))
    ).display_name == "renamed"


async def test_update_errors(clients: Clients) -> None:
    await create_pipeline(clients, "web")
    bad_path = pipeline_pb2.Pipeline(name="pipelines/web")
    error = await rpc_error(
        clients.pipelines.UpdatePipeline(Update(pipeline=bad_path, update_mask=mask("target.colour"))),
        Code.INVALID_ARGUMENT,
    )
    assert field_violations(error)[0].field == "update_mask"
    invalid = pipeline_pb2.Pipeline(name="pipelines/web", target=pipeline_pb2.Target(workload="Not_Valid"))
    error = await rpc_error(
        clients.pipelines.UpdatePipeline(Update(pipeline=invalid, update_mask=mask("target.workload"))),
        Code.INVALID_ARGUMENT,
    )
    assert [v.field for v in field_violations(error)] == ["pipeline.target.workload"]
    missing = pipeline_pb2.Pipeline(name="pipelines/nope", display_name="x")
    await rpc_error(
        clients.pipelines.UpdatePipeline(Update(pipeline=missing, update_mask=mask("display_name"))), Code.NOT_FOUND
    )
    error = await rpc_error(
        clients.pipelines.UpdatePipeline(Update(pipeline=pipeline_pb2.Pipeline())), Code.INVALID_ARGUMENT
    )
    assert [v.field for v in field_violations(error)] == ["pipeline.name"]


async def test_update_validate_only_changes_nothing(clients: Clients) -> None:
    created = await create_pipeline(clients, "web")
    patch = pipeline_pb2.Pipeline(name="pipelines/web", display_name="preview")
    preview = await clients.pipelines.UpdatePipeline(
        Update(pipeline=patch, update_mask=mask("display_name"), validate_only=True)
    )
    assert preview.display_name == "preview"
    fetched = await clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web"))
    assert fetched == created


# --------------------------------------------------------------------------- delete


async def test_delete_with_and_without_etag(clients: Clients) -> None:
    created = await create_pipeline(clients, "web")
    await create_pipeline(clients, "api")
    Delete = pipeline_service_pb2.DeletePipelineRequest  # noqa: N806
    await rpc_error(clients.pipelines.DeletePipeline(Delete(name="pipelines/web", etag="stale")), Code.ABORTED)
    await clients.pipelines.DeletePipeline(Delete(name="pipelines/web", etag=created.etag))
    await clients.pipelines.DeletePipeline(Delete(name="pipelines/api"))
    await rpc_error(
        clients.pipelines.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web")), Code.NOT_FOUND
    )
    await rpc_error(clients.pipelines.DeletePipeline(Delete(name="pipelines/web")), Code.NOT_FOUND)
    assert (await clients.pipelines.ListPipelines(ListRequest())).total_size == 0


# --------------------------------------------------------------------------- change notices


async def test_changes_are_published_on_core_nats(clients: Clients, nc: NATS, config: ConfigApp) -> None:
    received: list[bus_pb2.PipelineChanged] = []

    async def collect(msg: object) -> None:
        received.append(bus.decode(bus_pb2.PipelineChanged, msg.data))  # type: ignore[attr-defined]

    await nc.subscribe(bus.PIPELINE_CHANGED_SUBJECT, cb=collect)
    await nc.flush()
    created = await create_pipeline(clients, "web")
    patch = pipeline_pb2.Pipeline(name="pipelines/web", disabled=True)
    updated = await clients.pipelines.UpdatePipeline(Update(pipeline=patch, update_mask=mask("disabled")))
    await clients.pipelines.DeletePipeline(pipeline_service_pb2.DeletePipelineRequest(name="pipelines/web"))

    async def all_three() -> None:
        assert [m.change for m in received] == [
            bus_pb2.PipelineChanged.CREATED,
            bus_pb2.PipelineChanged.UPDATED,
            bus_pb2.PipelineChanged.DELETED,
        ]

    await eventually(all_three)
    assert received[0].pipeline == created
    assert received[1].pipeline == updated
    assert received[2].pipeline == pipeline_pb2.Pipeline(name="pipelines/web")


async def test_crud_on_postgresql(start_config: StartConfig, config_pg_url: str) -> None:
    await truncate_tables(config_pg_url)
    service = await start_config(database_url=config_pg_url)
    async with grpc.aio.insecure_channel(service.address) as channel:
        stub = pipeline_service_pb2_grpc.PipelineServiceStub(channel)
        created = await stub.CreatePipeline(
            Create(pipeline=sample_pipeline(description=CHINESE_DESCRIPTION), pipeline_id="web")
        )
        assert (await stub.GetPipeline(pipeline_service_pb2.GetPipelineRequest(name="pipelines/web"))) == created
        stale = pipeline_pb2.Pipeline(name="pipelines/web", etag="stale", display_name="x")
        await rpc_error(stub.UpdatePipeline(Update(pipeline=stale, update_mask=mask("display_name"))), Code.ABORTED)
        await rpc_error(stub.CreatePipeline(Create(pipeline=sample_pipeline(), pipeline_id="web")), Code.ALREADY_EXISTS)
        await stub.DeletePipeline(pipeline_service_pb2.DeletePipelineRequest(name="pipelines/web", etag=created.etag))
        assert (await stub.ListPipelines(ListRequest())).total_size == 0


async def test_replicas_sharing_a_database_see_each_others_changes(
    start_config: StartConfig, database_url: str
) -> None:
    """GetPipeline is cached per replica; change notices on NATS keep every replica's cache current.

    On a SQLite file and on PostgreSQL; the cache lives an hour, so only the notice can refresh it.
    """
    first = await start_config(database_url=database_url, env={"CONVEYOR_CONFIG_CACHE_TTL": "1h"})
    second = await start_config(database_url=database_url, env={"CONVEYOR_CONFIG_CACHE_TTL": "1h"})
    async with connected(first.address) as one, connected(second.address) as two:
        created = await create_pipeline(one, "web")
        get = pipeline_service_pb2.GetPipelineRequest(name="pipelines/web")
        assert await two.pipelines.GetPipeline(get) == created  # now cached on the second replica
        patch = pipeline_pb2.Pipeline(name="pipelines/web", display_name="changed on the first replica")
        updated = await one.pipelines.UpdatePipeline(Update(pipeline=patch, update_mask=mask("display_name")))

        async def fresh() -> None:
            assert await two.pipelines.GetPipeline(get) == updated

        await eventually(fresh, timeout=10)
        await one.pipelines.DeletePipeline(pipeline_service_pb2.DeletePipelineRequest(name="pipelines/web"))

        async def gone() -> None:
            try:
                await two.pipelines.GetPipeline(get)
            except grpc.aio.AioRpcError as error:
                assert error.code() == Code.NOT_FOUND
                return
            raise AssertionError("still served from the cache")

        await eventually(gone, timeout=10)

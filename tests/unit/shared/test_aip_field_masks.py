"""conveyor.aip.field_masks: AIP-134 update masks over protobuf resources."""

from __future__ import annotations

import pytest
from google.protobuf import field_mask_pb2, struct_pb2

from conveyor.aip import field_masks
from conveyor.aip.field_masks import UpdatableFields
from conveyor.errors import InvalidArgument
from conveyor.v1 import bus_pb2, event_service_pb2, pipeline_pb2
from conveyor.v1.pipeline_pb2 import Pipeline

OUTPUT_ONLY = ("name", "create_time", "update_time", "etag")
PIPELINE = UpdatableFields.all_except(Pipeline.DESCRIPTOR, OUTPUT_ONLY)
LENIENT = UpdatableFields.all_except(Pipeline.DESCRIPTOR, OUTPUT_ONLY, ignore_output_only=True)


def stored() -> Pipeline:
    pipeline = Pipeline(
        name="pipelines/web",
        display_name="Web",
        description="front end",
        etag="e1",
        source=pipeline_pb2.Source(
            registry="r.example.com",
            repository="team/web",
            tag_filter=pipeline_pb2.TagFilter(type=pipeline_pb2.TagFilter.REGEX, value=r"v\d+"),
        ),
        target=pipeline_pb2.Target(cluster="prod", namespace="web", workload="frontend", container="app"),
    )
    pipeline.options.verify_rollout = False
    pipeline.options.rollout_timeout.seconds = 600
    pipeline.options.rollout_timeout.nanos = 5
    pipeline.create_time.seconds = 100
    pipeline.update_time.seconds = 100
    return pipeline


def violations(paths: list[str] | None, patch: Pipeline | None = None, spec: UpdatableFields = PIPELINE) -> list[str]:
    with pytest.raises(InvalidArgument) as error:
        field_masks.apply(stored(), patch or Pipeline(), paths, spec)
    assert {v.field for v in error.value.violations} == {"update_mask"}
    return [v.description for v in error.value.violations]


# --------------------------------------------------------------------------- explicit masks


def test_explicit_mask_updates_only_named_fields() -> None:
    patch = Pipeline(display_name="新名字", description="ignored", disabled=True)
    result, paths = field_masks.apply(stored(), patch, ["display_name", "disabled"], PIPELINE)
    assert (result.display_name, result.disabled, result.description) == ("新名字", True, "front end")
    assert paths == ["display_name", "disabled"]


def test_a_field_mask_message_is_accepted() -> None:
    mask = field_mask_pb2.FieldMask(paths=["display_name"])
    result, paths = field_masks.apply(stored(), Pipeline(display_name="X"), mask, PIPELINE)
    assert (result.display_name, paths) == ("X", ["display_name"])


def test_nested_path_keeps_siblings() -> None:
    patch = Pipeline(target=pipeline_pb2.Target(workload="backend"))
    result, _ = field_masks.apply(stored(), patch, ["target.workload"], PIPELINE)
    assert (result.target.workload, result.target.cluster) == ("backend", "prod")


def test_naming_a_message_replaces_it_whole() -> None:
    patch = Pipeline(source=pipeline_pb2.Source(registry="other.example.com", repository="x/y"))
    result, _ = field_masks.apply(stored(), patch, ["source"], PIPELINE)
    assert result.source.registry == "other.example.com"
    assert not result.source.HasField("tag_filter")


def test_a_named_field_absent_from_the_patch_is_cleared() -> None:
    result, _ = field_masks.apply(stored(), Pipeline(), ["options.verify_rollout", "description"], PIPELINE)
    assert not result.options.HasField("verify_rollout")
    assert result.description == ""
    assert result.options.rollout_timeout.seconds == 600


def test_clearing_under_an_absent_parent_creates_no_empty_parent() -> None:
    existing = stored()
    existing.ClearField("options")
    result, _ = field_masks.apply(existing, Pipeline(), ["options.verify_rollout"], PIPELINE)
    assert not result.HasField("options")


def test_duplicate_paths_apply_once() -> None:
    _, paths = field_masks.apply(stored(), Pipeline(), ["disabled", "disabled"], PIPELINE)
    assert paths == ["disabled"]


def test_star_replaces_every_updatable_field_and_no_output_only_one() -> None:
    patch = Pipeline(name="pipelines/other", etag="forged", display_name="Replaced")
    patch.create_time.seconds = 1
    result, paths = field_masks.apply(stored(), patch, ["*"], PIPELINE)
    assert result.display_name == "Replaced"
    assert not result.HasField("options") and not result.HasField("source") and result.description == ""
    assert (result.name, result.etag, result.create_time.seconds) == ("pipelines/web", "e1", 100)
    assert paths == ["display_name", "description", "disabled", "source", "target", "options"]


def test_invalid_paths_are_each_a_violation() -> None:
    found = violations(["nope", "target.nope", "disabled.x", "*", ""])
    assert len(found) == 5
    assert found[0] == "invalid path 'nope': unknown field 'nope'"
    assert found[1] == "invalid path 'target.nope': unknown field 'nope'"
    assert found[2] == "invalid path 'disabled.x': disabled has no sub-fields"
    assert found[3] == "'*' must be the only path"
    assert found[4] == "invalid path '': unknown field ''"


def test_output_only_paths_are_rejected() -> None:
    found = violations(["etag", "create_time.seconds", "display_name"])
    assert found == [
        "invalid path 'etag': etag is output only",
        "invalid path 'create_time.seconds': create_time.seconds is output only",
    ]


def test_output_only_paths_can_be_declared_ignorable() -> None:
    patch = Pipeline(name="pipelines/x", etag="forged", display_name="New")
    patch.create_time.seconds = 5
    result, paths = field_masks.apply(stored(), patch, ["create_time", "etag", "name", "display_name"], LENIENT)
    assert (result.name, result.etag, result.create_time.seconds) == ("pipelines/web", "e1", 100)
    assert (result.display_name, paths) == ("New", ["display_name"])


def test_paths_outside_the_declared_updatable_ones_are_rejected() -> None:
    narrow = UpdatableFields(Pipeline.DESCRIPTOR, ["display_name", "target.workload"], output_only=OUTPUT_ONLY)
    assert violations(["description", "target"], spec=narrow) == [
        "invalid path 'description': description cannot be updated; updatable: display_name, target.workload",
        "invalid path 'target': target cannot be updated; updatable: display_name, target.workload",
    ]
    patch = Pipeline(target=pipeline_pb2.Target(workload="api"))
    result, paths = field_masks.apply(stored(), patch, ["target.workload"], narrow)
    assert (result.target.workload, paths) == ("api", ["target.workload"])


# --------------------------------------------------------------------------- empty mask: the fields that are set


@pytest.mark.parametrize("mask", [None, [], field_mask_pb2.FieldMask()])
def test_empty_mask_updates_the_fields_the_patch_sets(mask: field_mask_pb2.FieldMask | list[str] | None) -> None:
    patch = Pipeline(display_name="Renamed", target=pipeline_pb2.Target(workload="backend"))
    result, paths = field_masks.apply(stored(), patch, mask, PIPELINE)
    assert paths == ["display_name", "target.workload"]
    expected = stored()
    expected.display_name = "Renamed"
    expected.target.workload = "backend"
    assert result == expected


def test_empty_mask_skips_output_only_fields_the_client_echoes() -> None:
    patch = stored()
    patch.display_name = "Renamed"
    patch.etag = "forged"
    patch.update_time.seconds = 1
    result, paths = field_masks.apply(stored(), patch, None, PIPELINE)
    assert result.display_name == "Renamed"
    assert (result.name, result.etag, result.update_time.seconds) == ("pipelines/web", "e1", 100)
    assert "etag" not in paths and "name" not in paths


def test_empty_mask_does_not_see_fields_set_to_their_default() -> None:
    # The documented change for clients: `disabled = false` needs `disabled` in the mask (or `*`).
    existing = stored()
    existing.disabled = True
    result, paths = field_masks.apply(existing, Pipeline(disabled=False, display_name="X"), None, PIPELINE)
    assert result.disabled is True and paths == ["display_name"]
    result, _ = field_masks.apply(existing, Pipeline(disabled=False), ["disabled"], PIPELINE)
    assert result.disabled is False


def test_empty_mask_sees_explicit_presence() -> None:
    patch = Pipeline()
    patch.options.verify_rollout = True
    result, paths = field_masks.apply(stored(), patch, None, PIPELINE)
    assert paths == ["options.verify_rollout"]
    assert result.options.verify_rollout is True
    assert result.options.rollout_timeout.seconds == 600


def test_empty_mask_treats_well_known_types_as_leaves() -> None:
    patch = Pipeline()
    patch.options.rollout_timeout.seconds = 30
    result, paths = field_masks.apply(stored(), patch, None, PIPELINE)
    assert paths == ["options.rollout_timeout"]
    assert (result.options.rollout_timeout.seconds, result.options.rollout_timeout.nanos) == (30, 0)


def test_empty_mask_with_a_present_empty_message_replaces_it() -> None:
    patch = Pipeline()
    patch.options.SetInParent()
    result, paths = field_masks.apply(stored(), patch, None, PIPELINE)
    assert paths == ["options"]
    assert result.HasField("options") and result.options == pipeline_pb2.Options()


def test_empty_mask_with_an_empty_patch_changes_nothing() -> None:
    result, paths = field_masks.apply(stored(), Pipeline(name="pipelines/web", etag="e1"), None, PIPELINE)
    assert (result, paths) == (stored(), [])


def test_empty_mask_rejects_set_fields_that_cannot_be_updated() -> None:
    narrow = UpdatableFields(Pipeline.DESCRIPTOR, ["target.workload"], output_only=OUTPUT_ONLY)
    patch = Pipeline(description="x", target=pipeline_pb2.Target(workload="api", cluster="dev"))
    assert violations(None, patch, narrow) == [
        "description is set in the request but cannot be updated",
        "target.cluster is set in the request but cannot be updated",
    ]


# --------------------------------------------------------------------------- repeated and map fields


EVENTS = UpdatableFields.all_except(event_service_pb2.RegistryEvent.DESCRIPTOR, ["receive_time"])


def event(*pipelines: str) -> event_service_pb2.RegistryEvent:
    return event_service_pb2.RegistryEvent(
        push=bus_pb2.ImagePushed(tag="v1"),
        decisions=[event_service_pb2.MatchDecision(pipeline=name) for name in pipelines],
    )


def test_repeated_fields_are_replaced_whole() -> None:
    result, _ = field_masks.apply(event("a", "b"), event("c"), ["decisions"], EVENTS)
    assert [d.pipeline for d in result.decisions] == ["c"]
    cleared, _ = field_masks.apply(event("a"), event_service_pb2.RegistryEvent(), ["decisions"], EVENTS)
    assert list(cleared.decisions) == []
    only_decisions = event_service_pb2.RegistryEvent(decisions=event("z").decisions)
    result, paths = field_masks.apply(event("a"), only_decisions, None, EVENTS)
    assert paths == ["decisions"] and [d.pipeline for d in result.decisions] == ["z"]


def test_a_path_through_a_repeated_field_is_rejected() -> None:
    with pytest.raises(InvalidArgument) as error:
        field_masks.apply(event("a"), event("b"), ["decisions.pipeline"], EVENTS)
    assert error.value.violations[0].description == (
        "invalid path 'decisions.pipeline': 'decisions' is a repeated field; update it as a whole"
    )


def test_maps_are_replaced_whole() -> None:
    spec = UpdatableFields.all_except(struct_pb2.Struct.DESCRIPTOR, ())
    existing, patch = struct_pb2.Struct(), struct_pb2.Struct()
    existing["a"] = 1
    patch["b"] = 2
    result, _ = field_masks.apply(existing, patch, ["fields"], spec)
    assert dict(result) == {"b": 2}


# --------------------------------------------------------------------------- contract


def test_existing_and_patch_are_never_modified() -> None:
    existing, patch = stored(), Pipeline(display_name="X")
    result, _ = field_masks.apply(existing, patch, ["*"], PIPELINE)
    assert existing == stored() and patch == Pipeline(display_name="X")
    assert result is not existing


def test_a_message_of_another_type_is_a_programming_error() -> None:
    with pytest.raises(TypeError, match=r"conveyor\.v1\.Pipeline"):
        field_masks.apply(event(), event(), None, PIPELINE)


@pytest.mark.parametrize(
    ("updatable", "output_only", "message"),
    [
        (["nope"], [], "unknown field 'nope'"),
        (["target", "target.workload"], [], "overlap"),
        (["display_name"], ["display_name"], "overlap"),
    ],
)
def test_bad_declarations_are_programming_errors(updatable: list[str], output_only: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        UpdatableFields(Pipeline.DESCRIPTOR, updatable, output_only=output_only)

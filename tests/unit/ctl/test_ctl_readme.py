"""The README's tag-filter examples (grpcurl and conveyorctl) mean what the text around them says."""

from __future__ import annotations

import pathlib
import re
import shlex

from google.protobuf import json_format

from conveyor import tagfilter
from conveyor.v1 import pipeline_service_pb2
from conveyor_ctl import main as ctl_main, spec

README = (pathlib.Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")


def test_the_grpcurl_create_example_matches_release_tags() -> None:
    (body,) = re.findall(
        r"grpcurl -plaintext -d '(\{.*?\})' \\\n\s+\S+ conveyor\.v1\.PipelineService/CreatePipeline", README
    )
    request = json_format.Parse(body, pipeline_service_pb2.CreatePipelineRequest())
    matcher = tagfilter.compile_matcher(request.pipeline.source.tag_filter)

    assert matcher.matches("v1.3.0") and matcher.matches("v2")
    assert not matcher.matches("latest")


def test_the_conveyorctl_section_examples_are_full_matches_as_described() -> None:
    section = README[README.index("## conveyorctl") :]
    section = section[: section.index("\n## ")]
    claims = {
        r"regex:v\d+(\.\d+)*": ({"v1.3.0", "v2"}, {"v1.3.0-rc1"}),
        r"regex:v\d+": ({"v1", "v12"}, {"v1.3.0"}),
        r"regex:v\d.*": ({"v1.3.0", "v1.2.0-broken"}, {"latest"}),
    }
    for text, (matching, other) in claims.items():
        assert f"`{text}`" in section
        matcher = tagfilter.compile_matcher(spec.tag_filter(text))
        assert {t for t in matching | other if matcher.matches(t)} == matching, text
    semver = tagfilter.compile_matcher(spec.tag_filter("semver:^1.2"))
    assert "`semver:^1.2` matches `1.2.0` and `v1.9.3` but not `2.0.0` or `latest`" in section
    assert semver.matches("1.2.0") and semver.matches("v1.9.3")
    assert not semver.matches("2.0.0") and not semver.matches("latest") and not semver.matches("1.3.0-rc.1")
    # Every --tag-filter in the examples parses with the CLI's own flags.
    commands = [line for line in section.splitlines() if "--tag-filter" in line]
    assert commands
    for line in commands:
        words = shlex.split(line.rstrip("\\"))
        spec.tag_filter(words[words.index("--tag-filter") + 1])


def test_help_example_filter_matches_a_release_tag() -> None:
    (example,) = re.findall(r"--tag-filter '(regex:[^']+)'", ctl_main.EPILOG)
    matcher = tagfilter.compile_matcher(spec.tag_filter(example))
    assert matcher.matches("v1.3.0") and not matcher.matches("v1.3.0-rc1")

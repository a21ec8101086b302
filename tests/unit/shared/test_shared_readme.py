"""The README documents every setting the services read and every bus subject."""

from __future__ import annotations

import ast
import pathlib
import re

from conveyor import bus

ROOT = pathlib.Path(__file__).resolve().parents[3]
SETTINGS_MODULES = [
    "services/config/conveyor_config/settings.py",
    "services/trigger/conveyor_trigger/settings.py",
    "services/deployer/conveyor_deployer/settings.py",
]


def _documented_in(path: str) -> set[str]:
    doc = ast.get_docstring(ast.parse((ROOT / path).read_text(encoding="utf-8"))) or ""
    return set(re.findall(r"`(CONVEYOR_[A-Z_]+)`", doc))


def test_readme_lists_every_service_setting() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = {name for path in SETTINGS_MODULES for name in _documented_in(path) if f"`{name}`" not in readme}
    assert not missing, f"README lacks: {sorted(missing)}"


def test_readme_lists_every_subject_and_stream() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    names = [bus.IMAGE_PUSHED_SUBJECT, bus.DEPLOY_REQUESTED_SUBJECT, bus.RUN_EVENTS_SUBJECT]
    names += [bus.PIPELINE_CHANGED_SUBJECT, *bus.STREAMS]
    assert [name for name in names if f"`{name}`" not in readme] == []


def test_the_readme_sets_up_with_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()]
    assert commands == ["make run", "make test"]

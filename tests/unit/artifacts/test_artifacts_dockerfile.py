"""Dockerfile and .dockerignore, checked statically (no engine runs here)."""

from __future__ import annotations

import json
import re
import shlex

from tests.unit.artifacts.artifacts_support import ROOT, command_problem, console_scripts

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in joined.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        keyword, _, rest = stripped.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    return out


def stages() -> list[list[tuple[str, str]]]:
    found: list[list[tuple[str, str]]] = []
    for keyword, rest in instructions():
        if keyword == "FROM":
            found.append([])
        found[-1].append((keyword, rest))
    return found


def test_python_311_slim_base_for_every_stage() -> None:
    bases = [rest.split()[0] for stage in stages() for keyword, rest in stage if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)


def test_runs_as_a_non_root_user() -> None:
    final = stages()[-1]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can verify it


def test_installs_pinned_runtime_dependencies_only() -> None:
    installs = [rest for keyword, rest in instructions() if keyword == "RUN" and "pip install" in rest]
    assert installs
    for command in installs:
        for part in command.split("&&"):
            if "pip install" in part:
                assert "-c constraints.txt" in part, part
    assert "[dev]" not in DOCKERFILE and ".[" not in DOCKERFILE


def test_the_image_provides_every_console_script_and_defaults_to_a_service() -> None:
    env = " ".join(rest for keyword, rest in stages()[-1] if keyword == "ENV")
    assert "PATH=/opt/conveyor/bin:$PATH" in env
    (cmd,) = [rest for keyword, rest in stages()[-1] if keyword == "CMD"]
    assert command_problem(json.loads(cmd)) is None
    assert {"conveyor-config", "conveyor-trigger", "conveyor-deployer", "conveyorctl"} <= set(console_scripts())
    exposed = {int(p) for keyword, rest in instructions() if keyword == "EXPOSE" for p in rest.split()}
    assert exposed == {50051, 50052, 50053, 8080}


# ---------------------------------------------------------------- .dockerignore


def _compile(pattern: str) -> re.Pattern[str]:
    """Docker's pattern language: Go filepath.Match (`*`, `?` stay within a path element) plus `**`."""
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif pattern.startswith("**", index):
            regex, index = regex + ".*", index + 2
        else:
            char = pattern[index]
            regex += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            index += 1
    return re.compile(regex)


def ignored(path: str, rules: list[str]) -> bool:
    """Whether the build context leaves `path` out (the last matching rule wins; a rule on a directory covers it)."""
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for rule in rules:
        negate = rule.startswith("!")
        pattern = _compile(rule.lstrip("!").strip("/"))
        if any(pattern.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def dockerignore_rules() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def test_dockerignore_keeps_what_the_build_copies_and_drops_the_rest() -> None:
    rules = dockerignore_rules()
    copied = [
        source
        for keyword, rest in instructions()
        if keyword == "COPY" and "--from" not in rest
        for source in shlex.split(rest)[:-1]
    ]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source, rules), source
    for kept in ("src/conveyor/server.py", "services/config/conveyor_config/main.py", "pyproject.toml"):
        assert not ignored(kept, rules), kept
    for dropped in (
        ".venv/bin/python",
        ".git/HEAD",
        "data/conveyor.db",
        "tests/conftest.py",
        "src/conveyor/__pycache__/server.cpython-311.pyc",
        "src/conveyor.egg-info/PKG-INFO",
    ):
        assert ignored(dropped, rules), dropped

"""The checks scripts/lint.sh runs can fail: each one, fed a violation, exits non-zero and says what broke.

Import contracts and mypy run on small synthetic trees under the repository's own configuration (the
contracts and the mypy sections of pyproject.toml); buf runs through scripts/buf_check.py with protos/buf.yaml,
on synthetic protos and on the real ones. buf is the npm package pinned in tools/package.json: without
tools/node_modules these tests fail and name the install command.
"""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tomllib
from typing import Any

import pytest
from google.protobuf import descriptor

from conveyor.v1 import bus_pb2, event_service_pb2, pipeline_pb2, pipeline_service_pb2, run_pb2, target_service_pb2

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
BUF = ROOT / "tools" / "node_modules" / ".bin" / "buf"
BUF_CHECK = ROOT / "scripts" / "buf_check.py"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def run(*args: str | pathlib.Path, cwd: pathlib.Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    return done.returncode, done.stdout + done.stderr


def write(root: pathlib.Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# ------------------------------------------------------------------------------------------ import contracts

CONTRACTS = {c["id"]: c for c in PYPROJECT["tool"]["importlinter"]["contracts"]}

# A trigger with every room, each importing only downwards.
PKG = "services/trigger/conveyor_trigger"
CLEAN_TREE = {
    f"{PKG}/__init__.py": "",
    f"{PKG}/main.py": "from conveyor_trigger import app\n",
    f"{PKG}/app.py": "from conveyor_trigger.adapters import store\nfrom conveyor_trigger.edges import receiver\n",
    f"{PKG}/settings.py": "",
    f"{PKG}/metrics.py": "import prometheus_client\n",
    f"{PKG}/edges/__init__.py": "",
    f"{PKG}/edges/receiver.py": "from conveyor_trigger import metrics\nfrom conveyor_trigger.usecases import ports\n",
    f"{PKG}/adapters/__init__.py": "",
    f"{PKG}/adapters/store.py": "import sqlalchemy\nfrom conveyor_trigger.usecases import ports\n",
    f"{PKG}/usecases/__init__.py": "",
    f"{PKG}/usecases/ports.py": "from conveyor_trigger.domain import rules\n",
    f"{PKG}/domain/__init__.py": "",
    f"{PKG}/domain/rules.py": "import re\n",
}


def toml_value(value: Any) -> str:
    return json.dumps(value)  # strings, lists of strings and booleans are spelled alike in JSON and TOML


def importlinter_config() -> str:
    """The real trigger layers contract and domain purity rule, narrowed to the one synthetic package."""
    layers = CONTRACTS["trigger-layers"]
    pure = dict(CONTRACTS["domain-pure"])
    pure["source_modules"] = ["conveyor_trigger.domain"]
    # Only what exists in the synthetic graph: third-party packages and the trigger's own modules.
    pure["forbidden_modules"] = [
        m for m in pure["forbidden_modules"] if not m.startswith("conveyor") or m.startswith("conveyor_trigger.")
    ]
    del pure["ignore_imports"]
    lines = ["[tool.importlinter]", 'root_packages = ["conveyor_trigger"]', "include_external_packages = true"]
    for contract in (layers, pure):
        lines.append("\n[[tool.importlinter.contracts]]")
        lines += [f"{key} = {toml_value(value)}" for key, value in contract.items()]
    return "\n".join(lines) + "\n"


def lint_imports(tree: pathlib.Path) -> tuple[int, str]:
    (tree / "pyproject.toml").write_text(importlinter_config())
    env = {"PATH": str(BIN), "PYTHONPATH": str(tree / "services" / "trigger")}
    return run(BIN / "lint-imports", "--no-cache", cwd=tree, env=env)


def test_import_contracts_keep_a_well_layered_service(tmp_path: pathlib.Path) -> None:
    write(tmp_path, CLEAN_TREE)
    code, out = lint_imports(tmp_path)
    assert code == 0, out
    assert "Contracts: 2 kept, 0 broken." in out


@pytest.mark.parametrize(
    ("change", "contract"),
    [
        ({f"{PKG}/edges/receiver.py": "from conveyor_trigger.adapters import store\n"}, "trigger-layers"),
        ({f"{PKG}/adapters/store.py": "from conveyor_trigger.edges import receiver\n"}, "trigger-layers"),
        ({f"{PKG}/usecases/ports.py": "from conveyor_trigger.adapters import store\n"}, "trigger-layers"),
        ({f"{PKG}/domain/rules.py": "from conveyor_trigger.usecases import ports\n"}, "trigger-layers"),
        ({f"{PKG}/app.py": "from conveyor_trigger import main\n"}, "trigger-layers"),
        ({f"{PKG}/helpers.py": ""}, "trigger-layers"),  # a room the layout does not have
        ({f"{PKG}/domain/rules.py": "import grpc\n"}, "domain-pure"),
        ({f"{PKG}/domain/rules.py": "from kubernetes import client\n"}, "domain-pure"),
        ({f"{PKG}/domain/rules.py": "from conveyor_trigger import metrics\n"}, "domain-pure"),
    ],
    ids=[
        "edge-imports-adapter",
        "adapter-imports-edge",
        "usecase-imports-adapter",
        "domain-imports-usecase",
        "app-imports-main",
        "stray-root-module",
        "domain-imports-grpc",
        "domain-imports-kubernetes",
        "domain-imports-metrics",
    ],
)
def test_import_contracts_break_on_a_violation(tmp_path: pathlib.Path, change: dict[str, str], contract: str) -> None:
    write(tmp_path, {**CLEAN_TREE, **change})
    code, out = lint_imports(tmp_path)
    assert code != 0, out
    assert f"{CONTRACTS[contract]['name']} BROKEN" in " ".join(out.split()), out


# ------------------------------------------------------------------------------------------------------ mypy

UNTYPED = "def double(x):\n    return x * 2\n"


def test_mypy_is_strict_on_src_domain_and_usecases_only(tmp_path: pathlib.Path) -> None:
    shutil.copyfile(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    strict = [
        "src/conveyor/demo.py",
        "src/conveyor_ctl/demo.py",
        "services/config/conveyor_config/domain/demo.py",
        "services/deployer/conveyor_deployer/usecases/demo.py",
    ]
    relaxed = "services/trigger/conveyor_trigger/adapters/demo.py"
    type_error = "services/trigger/conveyor_trigger/adapters/typo.py"
    write(tmp_path, {**dict.fromkeys([*strict, relaxed], UNTYPED), type_error: 'count: int = "one"\n'})
    code, out = run(sys.executable, "-m", "mypy", "--cache-dir", tmp_path / ".mypy_cache", cwd=tmp_path)
    assert code == 1, out
    flagged = {line.split(":", 1)[0] for line in out.splitlines() if ": error:" in line}
    assert flagged == {*strict, type_error}, out
    assert out.count("Function is missing a type annotation") == len(strict), out
    assert 'Incompatible types in assignment (expression has type "str", variable has type "int")' in out


# ------------------------------------------------------------------------------------------------------- buf


@pytest.fixture(scope="module")
def buf() -> pathlib.Path:
    if not BUF.exists():
        pytest.fail(f"buf is not installed: run `npm ci --prefix tools --no-audit --no-fund` in {ROOT}", pytrace=False)
    return BUF


def buf_check(*args: str | pathlib.Path) -> tuple[int, str]:
    return run(sys.executable, BUF_CHECK, *args, cwd=ROOT)


THING = """syntax = "proto3";

package demo.v1;

// A thing.
message Thing {
  // Its name.
  string name = 1;
  // Its size.
  int32 size = 2;
}
"""


def proto_tree(root: pathlib.Path, thing: str = THING) -> pathlib.Path:
    write(root, {"protos/demo/v1/thing.proto": thing})
    shutil.copyfile(ROOT / "protos" / "buf.yaml", root / "protos" / "buf.yaml")
    return root


def test_buf_lint_passes_on_the_repo(buf: pathlib.Path) -> None:
    code, out = buf_check("lint")
    assert code == 0, out


def test_buf_lint_passes_a_clean_proto(buf: pathlib.Path, tmp_path: pathlib.Path) -> None:
    code, out = buf_check("lint", "--root", proto_tree(tmp_path))
    assert code == 0, out


@pytest.mark.parametrize(
    ("before", "after", "message"),
    [
        ("string name = 1;", "string Name = 1;", 'Field name "Name" should be lower_snake_case'),
        ("message Thing {", "message thing_t {", 'Message name "thing_t" should be PascalCase'),
        (
            "// A thing.",
            "enum Kind {\n  NONE = 0;\n}\n\n// A thing.",
            'Enum zero value name "NONE" should be suffixed with "_UNSPECIFIED"',
        ),
        ("package demo.v1;", "package demo;", 'Package name "demo" should be suffixed with a correctly formed version'),
    ],
    ids=["field-case", "message-case", "enum-zero-value", "package-version"],
)
def test_buf_lint_fails_on_a_violation(
    buf: pathlib.Path, tmp_path: pathlib.Path, before: str, after: str, message: str
) -> None:
    code, out = buf_check("lint", "--root", proto_tree(tmp_path, THING.replace(before, after, 1)))
    assert code != 0, out
    assert message in out


def git(root: pathlib.Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgsign=false", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


def committed(root: pathlib.Path, *versions: str) -> pathlib.Path:
    git(root, "init", "-q")
    for number, text in enumerate(versions):
        proto_tree(root, text)
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"version {number}")
    return root


def test_buf_breaking_fails_when_a_field_is_removed(buf: pathlib.Path, tmp_path: pathlib.Path) -> None:
    without_size = THING.replace("  // Its size.\n  int32 size = 2;\n", "")
    code, out = buf_check("breaking", "--root", committed(tmp_path, THING, without_size))
    assert code != 0, out
    assert 'Previously present field "2" with name "size" on message "Thing" was deleted.' in out


def test_buf_breaking_checks_the_work_tree_too(buf: pathlib.Path, tmp_path: pathlib.Path) -> None:
    committed(tmp_path, THING, THING.replace("// A thing.", "// A thing, documented."))
    assert buf_check("breaking", "--root", tmp_path)[0] == 0
    proto_tree(tmp_path, THING.replace("int32 size = 2;", "int64 size = 2;"))
    code, out = buf_check("breaking", "--root", tmp_path)
    assert code != 0, out
    assert 'changed type from "int32" to "int64"' in out


def test_buf_breaking_skips_a_first_commit(buf: pathlib.Path, tmp_path: pathlib.Path) -> None:
    code, out = buf_check("breaking", "--root", committed(tmp_path, THING))
    assert code == 0, out
    assert "skipped: HEAD~1 does not exist here" in out


# ----------------------------------------------------------------------------- enum value names (AIP-126)


def upper_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper()


def nested_enums(message: descriptor.Descriptor) -> list[descriptor.EnumDescriptor]:
    found = list(message.enum_types)
    for nested in message.nested_types:
        found += nested_enums(nested)
    return found


MODULES = [bus_pb2, event_service_pb2, pipeline_pb2, pipeline_service_pb2, run_pb2, target_service_pb2]
TOP_LEVEL = [e for m in MODULES for e in m.DESCRIPTOR.enum_types_by_name.values()]
NESTED = [e for m in MODULES for msg in m.DESCRIPTOR.message_types_by_name.values() for e in nested_enums(msg)]


def test_every_conveyor_enum_is_covered() -> None:
    names = {e.full_name for e in TOP_LEVEL + NESTED}
    assert {"conveyor.v1.ImageOrigin", "conveyor.v1.Run.State", "conveyor.v1.Target.WorkloadKind"} <= names


@pytest.mark.parametrize("enum", TOP_LEVEL, ids=lambda e: e.full_name)
def test_top_level_enum_values_carry_the_enum_name(enum: descriptor.EnumDescriptor) -> None:
    prefix = upper_snake(enum.name) + "_"
    assert [v.name for v in enum.values if not v.name.startswith(prefix)] == []


@pytest.mark.parametrize("enum", NESTED, ids=lambda e: e.full_name)
def test_nested_enum_values_are_unprefixed_after_the_unspecified_zero(enum: descriptor.EnumDescriptor) -> None:
    prefix = upper_snake(enum.name) + "_"
    assert enum.values_by_number[0].name == prefix + "UNSPECIFIED"
    assert [v.name for v in enum.values if v.number and v.name.startswith(prefix)] == []

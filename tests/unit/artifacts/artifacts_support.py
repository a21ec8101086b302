"""Helpers for checking the deployment artefacts against the code, offline.

- `interpolate`: Compose variable interpolation (`${VAR}`, `${VAR:-default}`, `${VAR-default}`,
  `${VAR:?error}`, `${VAR?error}`, `${VAR:+alt}`, nesting, `$$`), as Compose applies it before it
  validates a file; the compose-spec validator checks the result.
- `env_names_read`: the CONVEYOR_* names a service's code reads: string literals in its package
  and in the shared package (docstrings excluded), with f-strings such as
  `f"CONVEYOR_{service.upper()}_METRICS_ADDR"` turned into patterns.
- `console_scripts` / `entry_point_exists`: the commands pyproject declares, checked by reading
  the target module's source (nothing is imported).
"""

from __future__ import annotations

import ast
import importlib.util
import pathlib
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

ROOT = pathlib.Path(__file__).resolve().parents[3]
SERVICES = ("config", "trigger", "deployer")

# Parts of the shared package the services never run (healthcheck, generated code); the CLI, launcher and
# sandbox are packages of their own (src/conveyor_ctl, conveyor_launcher, conveyor_sandbox).
_NOT_SERVICE_CODE = ("healthcheck.py", "v1")


# ---------------------------------------------------------------- compose interpolation


class InterpolationError(ValueError):
    pass


def interpolate(text: str, environ: Mapping[str, str]) -> str:
    """Apply Compose interpolation to a whole file's text."""
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "$":
            out.append(char)
            index += 1
            continue
        following = text[index + 1 : index + 2]
        if following == "$":
            out.append("$")
            index += 2
        elif following == "{":
            value, index = _braced(text, index + 2, environ)
            out.append(value)
        else:
            match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[index + 1 :])
            if not match:
                raise InterpolationError(f"invalid interpolation at offset {index}: {text[index : index + 20]!r}")
            out.append(environ.get(match.group(0), ""))
            index += 1 + match.end()
    return "".join(out)


def _braced(text: str, start: int, environ: Mapping[str, str]) -> tuple[str, int]:
    match = re.match(r"[A-Za-z_][A-Za-z0-9_]*", text[start:])
    if not match:
        raise InterpolationError(f"invalid variable name at offset {start}: {text[start : start + 20]!r}")
    name = match.group(0)
    index = start + match.end()
    operator_match = re.match(r":-|-|:\?|\?|:\+|\+", text[index:])
    operator = operator_match.group(0) if operator_match else ""
    index += len(operator)
    # The argument runs to the matching brace and may itself contain ${...}.
    argument: list[str] = []
    depth = 0
    while True:
        if index >= len(text):
            raise InterpolationError(f"unterminated ${{{name}...")
        char = text[index]
        if char == "$" and text[index + 1 : index + 2] == "{":
            value, index = _braced(text, index + 2, environ)
            argument.append(value)
            continue
        if char == "}" and depth == 0:
            index += 1
            break
        argument.append(char)
        index += 1
    arg = "".join(argument)
    if not operator and arg:
        raise InterpolationError(f"invalid interpolation ${{{name}{arg}}}")
    value = environ.get(name)
    empty = value is None or value == ""
    if operator == ":-":
        return (arg if empty else value), index  # type: ignore[return-value]
    if operator == "-":
        return (arg if value is None else value), index
    if operator == ":?":
        if empty:
            raise InterpolationError(f"required variable {name} is missing: {arg}")
        return value, index  # type: ignore[return-value]
    if operator == "?":
        if value is None:
            raise InterpolationError(f"required variable {name} is missing: {arg}")
        return value, index
    if operator == ":+":
        return ("" if empty else arg), index
    if operator == "+":
        return ("" if value is None else arg), index
    return value or "", index


def interpolation_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


# ---------------------------------------------------------------- env names the code reads


@dataclass
class EnvNames:
    exact: set[str] = field(default_factory=set)
    patterns: list[re.Pattern[str]] = field(default_factory=list)

    def reads(self, name: str, service: str | None = None) -> bool:
        """Read literally, or matched by an f-string pattern; a pattern never vouches for a name
        carrying another service's prefix (`CONVEYOR_{svc}_METRICS_ADDR` read by config does not
        make CONVEYOR_TRIGGER_METRICS_ADDR a config setting)."""
        if name in self.exact:
            return True
        others = [s for s in SERVICES if s != service] if service else []
        if any(name.startswith(f"CONVEYOR_{other.upper()}_") for other in others):
            return False
        return any(p.fullmatch(name) for p in self.patterns)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def env_names_in(paths: Iterable[pathlib.Path]) -> EnvNames:
    names = EnvNames()
    for path in paths:
        tree = ast.parse(path.read_text(), filename=str(path))
        docstrings = _docstring_nodes(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.JoinedStr):
                regex = "".join(
                    re.escape(part.value) if isinstance(part, ast.Constant) else "[A-Z0-9_]+" for part in node.values
                )
                if regex.startswith("CONVEYOR_") and any(not isinstance(p, ast.Constant) for p in node.values):
                    names.patterns.append(re.compile(regex))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
                names.exact.update(re.findall(r"\bCONVEYOR_[A-Z0-9_]*[A-Z0-9]\b", node.value))
    return names


def service_code(service: str) -> list[pathlib.Path]:
    package = ROOT / "services" / service / f"conveyor_{service}"
    shared = [
        path
        for path in (ROOT / "src" / "conveyor").rglob("*.py")
        if path.relative_to(ROOT / "src" / "conveyor").parts[0] not in _NOT_SERVICE_CODE
    ]
    return sorted(package.rglob("*.py")) + sorted(shared)


def env_names_read(service: str) -> EnvNames:
    return env_names_in(service_code(service))


# ---------------------------------------------------------------- commands


def console_scripts() -> dict[str, str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(pyproject["project"]["scripts"])


def entry_point_problem(target: str) -> str | None:
    """None when `module:function` exists (read from source, not imported), else what is wrong."""
    module, _, function = target.partition(":")
    spec = importlib.util.find_spec(module.split(".")[0])
    if spec is None:
        return f"package of {module} is not installed"
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        return f"module {module} does not exist"
    tree = ast.parse(pathlib.Path(found.origin).read_text())
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    return None if function in defined else f"{module} defines no function {function}()"


def command_problem(argv: list[str]) -> str | None:
    """Whether a container command runs something this image has: a console script or `python -m MODULE`."""
    if not argv:
        return "empty command"
    scripts = console_scripts()
    if argv[0] in scripts:
        return entry_point_problem(scripts[argv[0]])
    if argv[0] in {"python", "python3"} and len(argv) >= 3 and argv[1] == "-m":
        found = importlib.util.find_spec(argv[2])
        return None if found is not None else f"no module {argv[2]}"
    return f"{argv[0]!r} is neither a console script in pyproject.toml nor `python -m MODULE`"


def service_of_command(argv: list[str]) -> str | None:
    """`conveyor-config` -> `config`."""
    if argv and argv[0].startswith("conveyor-") and argv[0].removeprefix("conveyor-") in SERVICES:
        return argv[0].removeprefix("conveyor-")
    return None

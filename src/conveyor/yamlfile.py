"""YAML settings files (clusters, registries, webhook sources) validated by pydantic models.

`load_yaml_file(path, Model, where="CONVEYOR_CLUSTERS_FILE=/etc/c.yaml", what="clusters file")`
returns a validated model or raises `YamlFileError` (a SettingsError) listing every problem, each
with its place in the document and what was expected::

    CONVEYOR_CLUSTERS_FILE=/etc/c.yaml: invalid clusters file:
      clusters[2].platform: 'AKS' is not one of 'TKE', 'EKS', 'EDGE' or 'KUBERNETES' (line 9)
      clusters[3]: unknown field(s) tokn (known: context, in_cluster, kubeconfig, name, platform) (line 12)
      clusters[5].name: required (line 15)

Unknown fields are always rejected (at every level), duplicate keys are a YAML error, a syntax
error names its line and column, and an empty file validates as an empty mapping. Checks that
need more than the document (environment variables, other files) go in model validators reading
`info.context` (the `context` argument); a `ValueError` raised there is reported as its message.
"""

from __future__ import annotations

import pathlib
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pydantic
import yaml
from pydantic_core import ErrorDetails

from conveyor.settings import SettingsError

M = TypeVar("M", bound=pydantic.BaseModel)
Loc = tuple[str | int, ...]
# (location, the raw value there) -> a label replacing that part of the location, e.g. "cluster 'a'".
Relabel = Callable[[Loc, Any], str | None]
# An error -> the message to show instead of the default one (None: the default).
Explain = Callable[[ErrorDetails], str | None]


class YamlModel(pydantic.BaseModel):
    """A convenient base: unknown fields rejected (also enforced by the loader), immutable."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class YamlFileError(SettingsError):
    """A YAML file that cannot be used; `problems` are the individual findings (no `where` prefix)."""

    def __init__(self, where: str, problems: Sequence[str], *, heading: str | None = None) -> None:
        self.where = where
        self.problems = list(problems)
        if heading is None:
            message = f"{where}: " + "; ".join(self.problems)
        else:
            message = f"{where}: {heading}:\n  " + "\n  ".join(self.problems)
        super().__init__(message)


class _UniqueKeyLoader(yaml.SafeLoader):  # type: ignore[misc]  # no PyYAML stubs installed
    """SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *base` may be overridden by explicit keys: that is the point of it
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping", node.start_mark, f"duplicate key {key!r}", key_node.start_mark
                    )
                seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml_file(
    path: pathlib.Path,
    model: type[M],
    *,
    where: str | None = None,
    what: str = "file",
    context: Mapping[str, Any] | None = None,
    relabel: Relabel | None = None,
    explain: Explain | None = None,
) -> M:
    """Read, parse and validate `path`; raises YamlFileError naming `where` (default: the path)."""
    where = str(path) if where is None else where
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlFileError(where, ["cannot read: not UTF-8 text"]) from None
    except OSError as exc:
        raise YamlFileError(where, [f"cannot read: {exc.strerror or exc}"]) from None
    try:
        document = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as exc:
        raise YamlFileError(where, [_describe_yaml_error(exc)]) from None
    try:
        return _validate(document, model, context)
    except pydantic.ValidationError as exc:
        root = _compose(text)
        problems = _problems(
            exc,
            model=model,
            document=document,
            relabel=relabel,
            explain=explain,
            line_of=lambda loc: _line_of(root, loc),
        )
        raise YamlFileError(where, problems, heading=f"invalid {what}") from None


def validate_document(
    document: Any,
    model: type[M],
    *,
    where: str,
    what: str = "file",
    context: Mapping[str, Any] | None = None,
    relabel: Relabel | None = None,
    explain: Explain | None = None,
) -> M:
    """Validate an already parsed document (no line numbers); raises YamlFileError."""
    try:
        return _validate(document, model, context)
    except pydantic.ValidationError as exc:
        problems = _problems(
            exc, model=model, document=document, relabel=relabel, explain=explain, line_of=lambda loc: None
        )
        raise YamlFileError(where, problems, heading=f"invalid {what}") from None


def label_items(collection: str, template: str, *, key: str = "name") -> Relabel:
    """Name the items of a top-level list by one of their fields: `clusters[0]` -> `cluster 'a'`.

    `template` gets the key's value as `{}` (e.g. "cluster {!r}"); items without it keep their index.
    """

    def relabel(loc: Loc, value: Any) -> str | None:
        if len(loc) == 2 and loc[0] == collection and isinstance(loc[1], int) and isinstance(value, dict):
            name = value.get(key)
            if isinstance(name, str) and name.strip():
                return template.format(name)
        return None

    return relabel


def format_location(loc: Loc) -> str:
    """`("clusters", 2, "platform")` -> `clusters[2].platform`."""
    return _path(loc, continuing=False)


# --- internals --------------------------------------------------------------------------------


def _validate(document: Any, model: type[M], context: Mapping[str, Any] | None) -> M:
    return model.model_validate({} if document is None else document, extra="forbid", context=context)


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        detail = exc.problem or "syntax error"
        if exc.context:
            detail += f" ({exc.context})"
        return f"not valid YAML at line {mark.line + 1}, column {mark.column + 1}: {detail}"
    return f"not valid YAML: {exc}"


def _path(loc: Loc, *, continuing: bool) -> str:
    text = ""
    for segment in loc:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text or continuing else segment
    return text


def _value_at(document: Any, loc: Loc) -> Any:
    value = document
    for segment in loc:
        in_mapping = isinstance(value, dict) and segment in value
        in_list = isinstance(value, list) and isinstance(segment, int) and 0 <= segment < len(value)
        if in_mapping or in_list:
            value = value[segment]
        else:
            return None
    return value


def _label(loc: Loc, document: Any, relabel: Relabel | None) -> str:
    if relabel is not None:
        for cut in range(len(loc), 0, -1):
            label = relabel(loc[:cut], _value_at(document, loc[:cut]))
            if label:
                return label + _path(loc[cut:], continuing=True)
    return format_location(loc)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """The 1-based line of the deepest node of `loc` present in the document."""
    node, line = root, None
    for segment in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(segment):
                    child = value_node
                    break
        elif isinstance(node, yaml.SequenceNode) and isinstance(segment, int) and 0 <= segment < len(node.value):
            child = node.value[segment]
        node = child
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated/Optional; of a union, prefer a model or a collection."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        members = [_unwrap(arg) for arg in typing.get_args(annotation) if arg is not type(None)]
        for member in members:
            if _is_model(member) or typing.get_origin(member) is not None:
                return member
        return members[0] if members else annotation
    return annotation


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def _model_at(model: type[pydantic.BaseModel], loc: Loc) -> type[pydantic.BaseModel] | None:
    current: Any = model
    for segment in loc:
        current = _unwrap(current)
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if isinstance(segment, str) and _is_model(current):
            fields = {info.alias or name: info for name, info in current.model_fields.items()}
            if segment not in fields:
                return None
            current = fields[segment].annotation
        elif origin in (dict, Mapping) and len(args) == 2:
            current = args[1]
        elif isinstance(segment, int) and origin in (list, tuple, set, frozenset, Sequence) and args:
            current = args[0]
        else:
            return None
    current = _unwrap(current)
    return current if _is_model(current) else None


def _known_fields(model: type[pydantic.BaseModel] | None) -> list[str]:
    if model is None:
        return []
    return sorted(info.alias or name for name, info in model.model_fields.items())


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _default_message(error: ErrorDetails, model: type[pydantic.BaseModel], loc: Loc) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    if kind == "missing":
        return "required"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        known = _known_fields(_model_at(model, loc))
        return "expected a mapping" + (f" with {', '.join(known)}" if known else "") + f", not {_kind(value)}"
    if kind in ("list_type", "tuple_type", "set_type", "frozen_set_type"):
        return f"expected a list, not {_kind(value)}"
    if kind in ("literal_error", "enum"):
        return f"{value!r} is not one of {ctx.get('expected', '?')}"
    if kind in ("bool_type", "bool_parsing"):
        return f"expected true or false, not {value!r}" if isinstance(value, str) else "expected true or false"
    if kind == "string_type":
        return f"expected a string, not {_kind(value)}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, not {_kind(value)}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, not {_kind(value)}"
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return str(ctx["error"])
    message = error["msg"]
    return message[:1].lower() + message[1:]


def _problems(
    exc: pydantic.ValidationError,
    *,
    model: type[pydantic.BaseModel],
    document: Any,
    relabel: Relabel | None,
    explain: Explain | None,
    line_of: Callable[[Loc], int | None],
) -> list[str]:
    # Unknown fields of one mapping are reported together, where the first one was.
    unknown: dict[Loc, list[str]] = {}
    entries: list[tuple[Loc, str | None]] = []
    for error in exc.errors(include_url=False):
        loc: Loc = tuple(error["loc"])
        custom = explain(error) if explain is not None else None
        if custom is None and error["type"] == "extra_forbidden" and loc:
            parent = loc[:-1]
            if parent not in unknown:
                unknown[parent] = []
                entries.append((parent, None))
            unknown[parent].append(str(loc[-1]))
            continue
        entries.append((loc, custom if custom is not None else _default_message(error, model, loc)))
    problems: list[str] = []
    for loc, found in entries:
        if found is None:
            known = _known_fields(_model_at(model, loc))
            message = f"unknown field(s) {', '.join(unknown[loc])}" + (f" (known: {', '.join(known)})" if known else "")
            line = line_of((*loc, unknown[loc][0]))
        else:
            message, line = found, line_of(loc)
        label = _label(loc, document, relabel)
        text = f"{label}: {message}" if label else message
        problems.append(text if line is None else f"{text} (line {line})")
    return problems

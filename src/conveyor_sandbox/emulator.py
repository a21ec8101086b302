"""The sandbox's Kubernetes API: kmock's emulator with the behaviour a real apiserver has and kmock lacks.

kmock's `KubernetesEmulator` stores objects and serves list/get/create/patch/delete over HTTP.
`SandboxEmulator` adds what clients of a real cluster rely on:

- namespaces (`/api/v1/namespaces[/NAME]`), whose URLs kmock cannot parse;
- patch semantics by content type: JSON Patch (RFC 6902, a failed `test` op answers 422 like the
  apiserver), JSON merge patch, and an approximation of strategic merge patch (lists of named
  items merged by name), with a 409 when a patch carries a stale `metadata.resourceVersion`;
- `metadata.uid`, `resourceVersion` (bumped on every write), `generation` (bumped when `spec`
  changes), `creationTimestamp`;
- the `status` subresource: a PATCH of the object ignores `status`, a PATCH of `.../status`
  changes only `status`;
- `labelSelector` on lists (equality and set-based forms);
- bounded memory: old request records and object versions are trimmed;
- `snapshot()` / `restore()` of every stored object, and change listeners called after each write
  (in-process or over HTTP), so the sandbox can keep its state in a file;
- requests served in constant time: kmock finds the reaction for a request by scanning every
  request it has recorded (`request in payload._source`), which made each request cost
  O(requests kept) -- tens of milliseconds after a few thousand. Only in-flight requests stay in
  kmock's list; served ones move to a bounded history that `requests_matching` reads. GET and
  PATCH of one object look it up by key instead of kmock's scan of every stored object.

PUT is not implemented (kmock answers 500); Conveyor never uses it.
"""

from __future__ import annotations

import collections
import copy
import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import jsonpatch
import kmock
from kmock._internal import apps, dicts, enums, rendering

NAMESPACES = kmock.resource("", "v1", "namespaces")
PODS = kmock.resource("", "v1", "pods")
DEPLOYMENTS = kmock.resource("apps", "v1", "deployments")
STATEFULSETS = kmock.resource("apps", "v1", "statefulsets")
DAEMONSETS = kmock.resource("apps", "v1", "daemonsets")
REPLICASETS = kmock.resource("apps", "v1", "replicasets")
CONTROLLERREVISIONS = kmock.resource("apps", "v1", "controllerrevisions")

WORKLOADS = {DEPLOYMENTS: "Deployment", STATEFULSETS: "StatefulSet", DAEMONSETS: "DaemonSet"}

_VERBS = {"create", "delete", "get", "list", "patch", "watch"}
RESOURCES: dict[kmock.resource, kmock.ResourceInfo] = {
    NAMESPACES: kmock.ResourceInfo(kind="Namespace", singular="namespace", namespaced=False, verbs=_VERBS),
    PODS: kmock.ResourceInfo(kind="Pod", singular="pod", namespaced=True, verbs=_VERBS, subresources={"status"}),
    DEPLOYMENTS: kmock.ResourceInfo(
        kind="Deployment", singular="deployment", namespaced=True, verbs=_VERBS, subresources={"status"}
    ),
    STATEFULSETS: kmock.ResourceInfo(
        kind="StatefulSet", singular="statefulset", namespaced=True, verbs=_VERBS, subresources={"status"}
    ),
    DAEMONSETS: kmock.ResourceInfo(
        kind="DaemonSet", singular="daemonset", namespaced=True, verbs=_VERBS, subresources={"status"}
    ),
    REPLICASETS: kmock.ResourceInfo(
        kind="ReplicaSet", singular="replicaset", namespaced=True, verbs=_VERBS, subresources={"status"}
    ),
    CONTROLLERREVISIONS: kmock.ResourceInfo(
        kind="ControllerRevision", singular="controllerrevision", namespaced=True, verbs=_VERBS
    ),
}

_NAMESPACE_PATH = re.compile(r"^/api/v1/namespaces(?:/(?P<name>[^/]+))?/?$")
_MAX_REQUESTS_KEPT = 10_000
_MAX_PAYLOAD_REQUESTS_KEPT = 100
_MAX_VERSIONS_KEPT = 10

# (resource, namespace, name) after a successful write of that object.
WriteListener = Callable[[kmock.resource, str | None, str], None]
# Called after anything stored changed (objects, status, deletions).
ChangeListener = Callable[[], None]
_MUTATIONS = {enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE}
SNAPSHOT_VERSION = 1


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_error(code: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """A Kubernetes `Status` failure as the apiserver would send it."""
    # kmock substitutes a traceback for empty details; the apiserver sends none.
    return kmock.KubernetesError(status=code, reason=reason, message=message, details=details or {"causes": []})


def not_found(resource: kmock.resource, name: str) -> kmock.KubernetesError:
    qualified = f"{resource.plural}.{resource.group}" if resource.group else str(resource.plural)
    return status_error(
        404,
        "NotFound",
        f'{qualified} "{name}" not found',
        name=name,
        group=resource.group or "",
        kind=resource.plural or "",
    )


@attrs.define(kw_only=True)
class SandboxEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with apiserver semantics the deployer relies on (see module doc)."""

    _last_resource_version: int = attrs.field(default=0, init=False)
    _listeners: list[WriteListener] = attrs.field(factory=list, init=False)
    _change_listeners: list[ChangeListener] = attrs.field(factory=list, init=False)
    # Requests already served, newest last (kmock's own list holds only those in flight).
    _served: collections.deque[rendering.Request] = attrs.field(
        factory=lambda: collections.deque(maxlen=_MAX_REQUESTS_KEPT), init=False
    )

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for resource, info in RESOURCES.items():
            self.resources[resource] = info

    # ---- public helpers for the sandbox (in-process, no HTTP) -------------------------------

    def add_listener(self, listener: WriteListener) -> None:
        self._listeners.append(listener)

    def add_change_listener(self, listener: ChangeListener) -> None:
        self._change_listeners.append(listener)

    def snapshot(self) -> dict[str, Any]:
        """Every stored object and the resource-version counter, as JSON-able data."""
        objects = [
            {"resource": [res.group or "", res.version or "", res.plural or ""], "object": plain(obj.raw)}
            for (res, _ns, _name), obj in list(self.objects.items())
            if not obj.deleted
        ]
        return {"version": SNAPSHOT_VERSION, "resourceVersion": self._last_resource_version, "objects": objects}

    def restore(self, snapshot: Mapping[str, Any]) -> None:
        """Load a `snapshot()` into an empty emulator (before it serves anything)."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"unsupported sandbox state version {snapshot.get('version')!r}")
        served = {(r.group or "", r.version or "", r.plural or ""): r for r in RESOURCES}
        try:
            newest = int(snapshot.get("resourceVersion", 0))
            for entry in snapshot.get("objects", []):
                resource = served.get(tuple(entry["resource"]))
                if resource is None:
                    raise ValueError(f"the sandbox does not serve {'/'.join(entry['resource'])}")
                obj = plain(entry["object"])
                meta = obj["metadata"]
                self.objects[(resource, meta.get("namespace"), meta["name"])] = obj
                newest = max(newest, int(meta.get("resourceVersion", 0) or 0))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed sandbox state: {exc!r}") from None
        self._last_resource_version = newest

    def read_object(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """A deep copy of the stored object, or None."""
        key = (resource, namespace, name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return copy.deepcopy(self.objects[key].raw)

    def list_objects(self, resource: kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        items = []
        for (res, ns, _name), obj in list(self.objects.items()):
            if res == resource and (namespace is None or ns == namespace) and not obj.deleted:
                items.append(copy.deepcopy(obj.raw))
        return items

    async def store(self, resource: kmock.resource, obj: dict[str, Any], *, notify: bool = True) -> dict[str, Any]:
        """Create or replace an object (metadata stamped as the apiserver would)."""
        obj = plain(obj)  # stored objects share no dicts with the caller or each other
        meta = obj.setdefault("metadata", {})
        key = (resource, meta.get("namespace"), meta["name"])
        async with self._lock:
            existing = key in self.objects and not self.objects[key].deleted
            if existing:
                old = self.objects[key].raw
                self._stamp_update(old, obj)
                self._store(key, obj)
                event = "MODIFIED"
            else:
                self._stamp_new(obj)
                self.objects[key] = obj
                event = "ADDED"
            await self._buses[resource].put({"type": event, "object": copy.deepcopy(obj)})
        self._changed()
        if notify:
            self._notify(resource, key[1], key[2])
        return copy.deepcopy(obj)

    async def store_status(
        self, resource: kmock.resource, namespace: str | None, name: str, status: dict[str, Any]
    ) -> None:
        """Replace an object's status (like the status subresource); no generation change."""
        key = (resource, namespace, name)
        async with self._lock:
            if key not in self.objects or self.objects[key].deleted:
                raise LookupError(f"{resource.plural} {namespace}/{name} does not exist")
            obj = copy.deepcopy(self.objects[key].raw)
            obj["status"] = status
            obj["metadata"]["resourceVersion"] = self._next_resource_version()
            self._store(key, obj)
            await self._buses[resource].put({"type": "MODIFIED", "object": copy.deepcopy(obj)})
        self._changed()

    async def remove_object(self, resource: kmock.resource, namespace: str | None, name: str) -> None:
        key = (resource, namespace, name)
        async with self._lock:
            if key in self.objects and not self.objects[key].deleted:
                raw = self.objects[key].raw
                self.objects[key].delete()
                await self._buses[resource].put({"type": "DELETED", "object": raw})
        self._changed()

    def requests_matching(
        self,
        method: str | None = None,
        resource: kmock.resource | None = None,
        namespace: str | None = None,
        name: str | None = None,
        subresource: str | None = None,
    ) -> list[rendering.Request]:
        """Requests received over HTTP (most recent ones; old records are trimmed)."""
        found = []
        for request in [*self._served, *self._requests]:
            if method is not None and str(request.method.value).upper() != method.upper():
                continue
            if resource is not None and request.resource != resource:
                continue
            if namespace is not None and request.namespace != namespace:
                continue
            if name is not None and request.name != name:
                continue
            if subresource is not None and request.subresource != subresource:
                continue
            found.append(request)
        return found

    # ---- HTTP ----------------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        self._trim()
        match = _NAMESPACE_PATH.match(raw_request.path)
        if match is None:
            return await super().__call__(raw_request)
        # kmock's URL parser reads `/api/v1/namespaces/x` as "namespace x, no resource": serve
        # namespaces by building the request it would have parsed for any other cluster-wide kind.
        await raw_request.read()
        try:
            try:
                data = await raw_request.json()
            except ValueError:
                data = None
            name = match.group("name")
            method = enums.method(raw_request.method)
            query = dict(raw_request.query)
            action: enums.action | None
            if method == enums.method.GET:
                action = (
                    enums.action.WATCH
                    if query.get("watch") == "true"
                    else (enums.action.FETCH if name else enums.action.LIST)
                )
            elif method == enums.method.POST and not name:
                action = enums.action.CREATE
            elif method == enums.method.PATCH and name:
                action = enums.action.UPDATE
            elif method == enums.method.DELETE and name:
                action = enums.action.DELETE
            else:
                raise status_error(405, "MethodNotAllowed", f"{raw_request.method} is not supported on namespaces")
            request = rendering.Request(
                id=len(self._requests),
                raw_request=raw_request,
                url=raw_request.url,
                method=raw_request.method,
                params=query,
                headers=dict(raw_request.headers),
                body=await raw_request.read(),
                data=data,
                action=action,
                resource=NAMESPACES,
                namespace=None,
                name=name,
            )
            self._requests.append(request)
            return await self._handle(request)
        except Exception as exc:
            return await self._render_error(exc)

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        try:
            return await self._handle_realistically(request)
        except kmock.KubernetesObjectNotFoundError:
            assert request.resource is not None
            raise not_found(request.resource, request.name or "") from None
        finally:
            self._retire(request)
            if request.action in _MUTATIONS:
                self._changed()

    def _retire(self, request: rendering.Request) -> None:
        """Move a served request from kmock's list (scanned on every request) to the history."""
        for index in range(len(self._requests) - 1, -1, -1):
            if self._requests[index] is request:
                del self._requests[index]
                break
        self._served.append(request)

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        # kmock finds the object by scanning every stored object; a keyed lookup is O(1).
        obj = self._stored(request)
        if obj is None or obj.deleted:
            assert request.resource is not None
            raise not_found(request.resource, request.name or "")
        payload: rendering.Payload = obj.raw
        return payload

    async def _serve_update(self, request: rendering.Request) -> rendering.Payload:
        # The patch was applied in `_handle_realistically`; serve the stored result (keyed lookup).
        obj = self._stored(request)
        if obj is None:
            assert request.resource is not None
            raise not_found(request.resource, request.name or "")
        payload: rendering.Payload = obj.last.raw
        return payload

    def _stored(self, request: rendering.Request) -> Any:
        if request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        return self.objects[key] if key in self.objects else None  # noqa: SIM401 - kmock's ObjectsArray has no .get()

    async def _handle_realistically(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        if resource is not None and request.action == enums.action.UPDATE and request.name is not None:
            key = (resource, request.namespace, request.name)
            async with self._lock:
                patched = self._apply_patch(request, key)
                await self._buses[resource].put({"type": "MODIFIED", "object": copy.deepcopy(patched)})
            self._notify(resource, request.namespace, request.name)
            # Skip kmock's own merge (it already happened here); serve the stored result.
            return await apps.RawHandler._handle(self, request)
        if resource is not None and request.action == enums.action.CREATE and isinstance(request.data, dict):
            meta = request.data.setdefault("metadata", {})
            if request.namespace and not meta.get("namespace"):
                meta["namespace"] = request.namespace
            if not meta.get("name"):
                raise status_error(422, "Invalid", "metadata.name: Required value: name is required")
            self._stamp_new(request.data)
            response = await super()._handle(request)
            self._notify(resource, meta.get("namespace"), meta["name"])
            return response
        return await super()._handle(request)

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        result = await super()._serve_list(request)
        selector = request.params.get("labelSelector", "")
        assert isinstance(result, dict)
        if selector:
            requirements = parse_label_selector(selector)
            result["items"] = [
                item
                for item in result["items"]
                if labels_match(requirements, item.get("metadata", {}).get("labels") or {})
            ]
        result["metadata"] = {"resourceVersion": str(self._last_resource_version)}
        return result

    # ---- internals ----------------------------------------------------------------------------

    def _next_resource_version(self) -> str:
        self._last_resource_version += 1
        return str(self._last_resource_version)

    def _changed(self) -> None:
        for listener in self._change_listeners:
            listener()

    def _notify(self, resource: kmock.resource, namespace: str | None, name: str) -> None:
        for listener in self._listeners:
            listener(resource, namespace, name)

    def _stamp_new(self, obj: dict[str, Any]) -> None:
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", now_rfc3339())
        meta["resourceVersion"] = self._next_resource_version()
        if "spec" in obj:
            meta["generation"] = 1

    def _stamp_update(self, old: Mapping[str, Any], new: dict[str, Any]) -> None:
        old_meta = old.get("metadata", {})
        meta = new.setdefault("metadata", {})
        for field in ("uid", "creationTimestamp"):
            if field in old_meta:
                meta[field] = old_meta[field]
        generation = int(old_meta.get("generation", 1 if "spec" in old else 0))
        if "spec" in new and new.get("spec") != old.get("spec"):
            generation += 1
        if generation:
            meta["generation"] = generation
        meta["resourceVersion"] = self._next_resource_version()

    def _store(self, key: Any, obj: dict[str, Any]) -> None:
        history = self.objects[key].history
        history.append(obj)
        if len(history) > _MAX_VERSIONS_KEPT:
            del history[: len(history) - _MAX_VERSIONS_KEPT]

    def _apply_patch(self, request: rendering.Request, key: Any) -> dict[str, Any]:
        resource = key[0]
        if key not in self.objects or self.objects[key].deleted:
            raise not_found(resource, key[2])
        current = copy.deepcopy(self.objects[key].raw)
        content_type = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        body = request.data
        if content_type == "application/json-patch+json":
            if not isinstance(body, list):
                raise status_error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                patched = jsonpatch.apply_patch(current, body, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                # What the apiserver answers for a failed `test` or an invalid path.
                raise status_error(
                    422,
                    "Invalid",
                    "the server rejected our request due to an error in our request",
                    causes=[{"reason": "UnexpectedServerResponse", "message": str(exc)}],
                ) from exc
        elif content_type in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            if not isinstance(body, dict):
                raise status_error(400, "BadRequest", "a merge patch must be a JSON object")
            wanted_version = (body.get("metadata") or {}).get("resourceVersion")
            if wanted_version and wanted_version != current["metadata"].get("resourceVersion"):
                qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
                raise status_error(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {qualified} "{key[2]}": the object has been modified; '
                    "please apply your changes to the latest version and try again",
                )
            if content_type == "application/merge-patch+json":
                patched = dict(dicts.merge_patch_dict(current, body))
            else:
                patched = strategic_merge(current, body)
        else:
            raise status_error(
                415,
                "UnsupportedMediaType",
                f"the sandbox does not support patches of type {content_type or '(none)'}; "
                "use application/json-patch+json or application/merge-patch+json",
            )
        if not isinstance(patched, dict):
            raise status_error(422, "Invalid", "the patch did not produce an object")
        if request.subresource == "status":
            result = copy.deepcopy(current)
            result["status"] = patched.get("status", {})
            result["metadata"]["resourceVersion"] = self._next_resource_version()
        elif request.subresource:
            raise status_error(404, "NotFound", f"the sandbox does not serve the {request.subresource} subresource")
        else:
            result = patched
            if "status" in current:
                result["status"] = current["status"]
            else:
                result.pop("status", None)
            for field in ("name", "namespace"):
                if result.get("metadata", {}).get(field) != current["metadata"].get(field):
                    raise status_error(422, "Invalid", f"metadata.{field}: field is immutable")
            self._stamp_update(current, result)
        self._store(key, result)
        return copy.deepcopy(result)

    def _trim(self) -> None:
        # A long-running sandbox (make run) must not keep every request forever; the history of
        # served requests is a bounded deque, and kmock's reactions keep their own lists.
        for payload in self._payloads:
            if len(payload._requests) > 2 * _MAX_PAYLOAD_REQUESTS_KEPT:
                del payload._requests[:-_MAX_PAYLOAD_REQUESTS_KEPT]
        for errors in self._errors:
            if len(errors) > 2 * _MAX_PAYLOAD_REQUESTS_KEPT:
                del errors[:-_MAX_PAYLOAD_REQUESTS_KEPT]


def strategic_merge(current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
    """An approximation of strategic merge patch: lists of objects that all carry `name` merge by name."""
    result: dict[str, Any] = copy.deepcopy(dict(current))
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = strategic_merge(result[key], value)
        elif _named_list(value) and _named_list(result.get(key)):
            merged = {item["name"]: item for item in result[key]}
            order = [item["name"] for item in result[key]]
            for item in value:
                if item.get("$patch") == "delete":
                    merged.pop(item["name"], None)
                    continue
                if item["name"] in merged:
                    merged[item["name"]] = strategic_merge(merged[item["name"]], item)
                else:
                    merged[item["name"]] = {k: v for k, v in item.items() if not k.startswith("$")}
                    order.append(item["name"])
            result[key] = [merged[name] for name in order if name in merged]
        else:
            result[key] = copy.deepcopy(value)
    return result


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, dict) and "name" in i for i in value)


# ---- label selectors ---------------------------------------------------------------------------

_SET_REQUIREMENT = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_selector(selector: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        parts.append(current)
    return parts


def parse_label_selector(selector: str) -> list[tuple[str, str, tuple[str, ...]]]:
    """`a=b,c!=d,e in (f,g),!h,i` -> [(key, operator, values)]."""
    requirements: list[tuple[str, str, tuple[str, ...]]] = []
    for part in _split_selector(selector):
        text = part.strip()
        set_match = _SET_REQUIREMENT.match(text)
        if set_match:
            values = tuple(v.strip() for v in set_match.group(3).split(",") if v.strip())
            requirements.append((set_match.group(1), set_match.group(2), values))
        elif "!=" in text:
            key, _, value = text.partition("!=")
            requirements.append((key.strip(), "!=", (value.strip(),)))
        elif "==" in text:
            key, _, value = text.partition("==")
            requirements.append((key.strip(), "=", (value.strip(),)))
        elif "=" in text:
            key, _, value = text.partition("=")
            requirements.append((key.strip(), "=", (value.strip(),)))
        elif text.startswith("!"):
            requirements.append((text[1:].strip(), "!exists", ()))
        else:
            requirements.append((text, "exists", ()))
    return requirements


def labels_match(requirements: list[tuple[str, str, tuple[str, ...]]], labels: Mapping[str, str]) -> bool:
    for key, operator, values in requirements:
        present = key in labels
        value = labels.get(key)
        if operator == "=" and value != values[0]:
            return False
        if operator == "!=" and present and value == values[0]:
            return False
        if operator == "in" and value not in values:
            return False
        if operator == "notin" and present and value in values:
            return False
        if operator == "exists" and not present:
            return False
        if operator == "!exists" and present:
            return False
    return True


def plain(obj: Any) -> Any:
    """A JSON round trip: a deep copy in which no two places share a dict (deepcopy keeps aliases)."""
    return json.loads(json.dumps(obj))

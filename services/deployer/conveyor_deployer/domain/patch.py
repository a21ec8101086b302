"""JSON Patches (RFC 6902) that change one container's image and nothing else.

`test` operations pin what the patch was computed from -- the object's resourceVersion, the
container's index, name and current image -- so the API server rejects the patch if the workload
changed in between (the deployer then re-reads and recomputes). JSON Patch works on every
apiserver and touches only the paths it names; strategic merge would depend on the server's
merge keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from conveyor_deployer.domain.workloads import ContainerSlot, resource_version, workload_annotations

JsonPatch = list[dict[str, Any]]


def escape_pointer(token: str) -> str:
    """RFC 6901 escaping of one path segment (`/` and `~` in annotation keys)."""
    return token.replace("~", "~0").replace("/", "~1")


def image_patch(
    workload: Mapping[str, Any],
    slot: ContainerSlot,
    new_image: str,
    *,
    set_annotations: Mapping[str, str],
) -> JsonPatch:
    """Replace `slot`'s image with `new_image` and set workload annotations; pinned by `test` ops."""
    ops: JsonPatch = []
    version = resource_version(workload)
    if version:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": version})
    ops += [
        {"op": "test", "path": f"{slot.pointer}/name", "value": slot.name},
        {"op": "test", "path": f"{slot.pointer}/image", "value": slot.image},
        {"op": "replace", "path": f"{slot.pointer}/image", "value": new_image},
    ]
    if set_annotations:
        if (workload.get("metadata") or {}).get("annotations") is None:
            ops.append({"op": "add", "path": "/metadata/annotations", "value": dict(set_annotations)})
        else:
            existing = workload_annotations(workload)
            for key, value in set_annotations.items():
                # `add` on an existing member replaces it (RFC 6902 4.1); `replace` needs it to exist.
                if existing.get(key) != value:
                    ops.append({"op": "add", "path": f"/metadata/annotations/{escape_pointer(key)}", "value": value})
    return ops


def describe(ops: JsonPatch) -> str:
    """Compact JSON of the patch for the run log."""
    return json.dumps(ops, separators=(",", ":"))

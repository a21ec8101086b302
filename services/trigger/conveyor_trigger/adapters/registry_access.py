"""THE single wiring point between the trigger and the registry client (`conveyor.registry`).

The trigger codes against its own Protocols (`DigestResolver`, `TagLister` in
`usecases.ports`); this module is the only place that builds the real implementation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from conveyor.registry import RegistryClient
from conveyor_trigger.usecases.ports import DigestResolver, TagLister


@dataclass(frozen=True)
class RegistryAccess:
    lister: TagLister
    resolver: DigestResolver
    close: Callable[[], Awaitable[None]]


def registry_access_from_env(environ: Mapping[str, str]) -> RegistryAccess:
    """The registry client configured by CONVEYOR_REGISTRIES_FILE (raises SettingsError when invalid)."""
    client = RegistryClient.from_env(environ)
    return RegistryAccess(lister=client, resolver=client, close=client.close)

"""The plan's actions: what `make run` sets up around the sandbox besides starting processes.

- `SeedRegistry`: write the demo images' OCI layout (deterministic, so rebuilding it every start is
  harmless) and push the seeded tags the registry's storage lacks, before the registry starts.
- `EnsurePipeline`: once the services are ready, create the demo pipeline unless it exists. It goes
  through conveyorctl's client, like a person would.
"""

from __future__ import annotations

import asyncio

import grpc

from conveyor.v1 import pipeline_service_pb2
from conveyor_ctl.client import CallError, Clients
from conveyor_launcher.plan import Action, EnsurePipeline, LaunchError, SeedRegistry
from conveyor_launcher.supervisor import Console
from conveyor_sandbox import images, registry

PIPELINE_TIMEOUT = 15.0


async def perform(action: Action, console: Console) -> None:
    match action:
        case SeedRegistry():
            await seed_registry(action, console)
        case EnsurePipeline():
            note = await asyncio.to_thread(ensure_pipeline, action)
            if note:
                console.say(note)


async def seed_registry(action: SeedRegistry, console: Console) -> None:
    images.build_demo_layout(action.layout)
    try:
        pushed = await registry.seed(action.storage, action.workdir, action.layout, action.repository, action.tags)
    except (registry.RegistryError, images.SkopeoError) as exc:
        raise LaunchError(f"cannot push the demo images into the local registry: {exc}") from None
    if pushed:
        console.say(f"pushed the demo images {action.repository}:{', '.join(pushed)} (layout {action.layout})")


def ensure_pipeline(action: EnsurePipeline) -> str | None:
    """Create the pipeline unless it exists; returns what to tell the user, if anything."""
    name = f"pipelines/{action.pipeline_id}"
    address = action.config_address
    clients = Clients({"config": address, "trigger": address, "deployer": address}, PIPELINE_TIMEOUT)
    try:
        try:
            existing = clients.pipelines.call("GetPipeline", pipeline_service_pb2.GetPipelineRequest(name=name))
        except CallError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise LaunchError(f"cannot read the demo pipeline {name}: {exc.code.name}: {exc.details}") from None
        else:
            wanted = action.pipeline.source.registry
            if existing.source.registry != wanted:
                return f"note: {name} deploys pushes of {existing.source.registry}, not of this registry {wanted}"
            return None
        # No request_id: after a deletion it would return the deleted pipeline instead of creating one.
        request = pipeline_service_pb2.CreatePipelineRequest(pipeline=action.pipeline, pipeline_id=action.pipeline_id)
        try:
            clients.pipelines.call("CreatePipeline", request)
        except CallError as exc:
            if exc.code != grpc.StatusCode.ALREADY_EXISTS:
                raise LaunchError(f"cannot create the demo pipeline {name}: {exc.code.name}: {exc.details}") from None
        return f"created the demo pipeline {name}"
    finally:
        clients.close()

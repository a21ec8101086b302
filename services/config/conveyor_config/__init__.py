"""conveyor-config: pipelines and run records.

Layers (outside in):

- `main` wires everything and runs the process (`conveyor-config`, `conveyor-config migrate`).
- Edges: `grpc_api` (PipelineService, RunService), `run_events` (JetStream consumer of
  RunEvents), `outbox` (DeployRequested relay), `changes` (PipelineChanged notices),
  `targets` (client of the deployer's TargetService).
- `usecases`: plain async code over adapters typed by Protocols.
- `domain`: pure rules (validation, update masks, run states, filters, page tokens).
- `storage` + `schema` + `migrations`: SQLAlchemy 2 asyncio on SQLite or PostgreSQL.
"""

"""conveyor-config: pipelines and run records.

Layers (outside in; each imports only the ones below it):

- `main` parses argv (`conveyor-config`, `conveyor-config migrate`) and runs `app.ConfigApp`,
  the composition root wiring adapters into use cases into edges.
- `edges`: `grpc_api` (PipelineService, RunService), `run_events` (JetStream consumer of
  RunEvents), `changes` (follows PipelineChanged notices).
- `adapters`: `storage` (SQLAlchemy 2 asyncio on SQLite or PostgreSQL, with its Alembic
  migrations), `jetstream` (outbox publisher), `changes` (PipelineChanged notices),
  `targets` (client of the deployer's TargetService).
- `usecases`: plain async code over the ports in `usecases.ports` (typing.Protocol).
- `domain`: pure rules (validation, update masks, run states, filters, page tokens).
"""

"""Use cases of the config service: plain async code over the ports in `usecases.ports`.

- `pipelines`: Create/Get/List/Update/Delete pipelines (with the GetPipeline cache and total_size counts).
- `runs`: StartPipeline, Get/List/Delete runs, TailRunLogs, and storing RunEvents from the bus.
- `outbox`: the DeployRequested outbox relay.  `retention`: expiring idempotency keys and run tombstones.
- `caches`, `notifier`: in-process state the use cases share.

The gRPC servicers and the bus consumer call these; they raise `conveyor.errors`
exceptions, which the shared interceptor maps to gRPC statuses in one place.
"""

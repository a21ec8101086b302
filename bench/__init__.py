"""Conveyor's benchmarks (`make bench`, `python -m bench --help`): not tests, they assert nothing.

They run the real processes -- nats-server (JetStream), conveyor-config (SQLite in a temporary
directory, or PostgreSQL with `--postgres`), conveyor-trigger, conveyor-deployer -- plus the
sandbox Kubernetes API inside the driver (it timestamps every PATCH on arrival), all on free
loopback ports, and print what the system achieves next to the targets of issue 5:

| scenario   | figures                                                                        | target          |
|------------|--------------------------------------------------------------------------------|-----------------|
| `latency`  | webhook sent -> PATCH at the API, p50/p95/p99 over 1,000 pushes (20/s)         | p99 < 50 ms     |
| `fanout`   | one push -> 1,000 DeployRequested stored, -> 1,000 PATCHes sent                 | < 5 s           |
| `ingest`   | webhooks/s answered 2xx (stored in JetStream), 64 clients; do-nothing baseline | >= 5,000/s      |
| `matching` | pushes matched/s against 10,000 pipelines: pure matcher, and running trigger   | >= 50,000/s     |
| `config`   | GetPipeline/s (32 clients); ListPipelines p50/p99 (50/1000, filtered or not)    | Get >= 3,000/s  |
| `rss`      | trigger VmRSS with 100,000 pipelines cached                                    | --              |

Modules: `cli` (options, output), `scenarios` (what is measured), `system` (the processes),
`sandbox` (PATCH timing), `fixtures` (pipelines, workloads, webhooks), `seed` (bulk-loading
pipelines), `stats` (percentiles, rates, /proc figures), `report` (table, JSON).

Options: `--quick` (small sizes), `--only NAME`, `--json`, `--profile NAME` (the services the
scenario exercises run under cProfile; top functions printed), `--set CONVEYOR_VAR=VALUE`
(change a service setting to see what bounds a figure), `--postgres [URL]`, `--keep`.
"""

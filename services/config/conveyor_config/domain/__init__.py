"""The config service's pure domain: no I/O, no clocks, no gRPC.

- `pipelines`: normalisation and validation with field violations, what UpdatePipeline may change, etags.
- `names`: generated id prefixes, Kubernetes names and request ids users give.
- `runs`: run state ordering and how a RunEvent changes a run.
- `queries`: the AIP-160 filters of ListPipelines and ListRuns, and what their page tokens are bound to.
- `outcomes`: what a storage operation reports back to the use cases.

The API mechanics themselves (page tokens and sizes, filter parsing, field masks, ids) are conveyor.aip;
tag filters are conveyor.tagfilter.
"""

"""The config service's pure domain: no I/O, no clocks, no gRPC.

- `pipelines`: normalisation and validation with field violations, etags (AIP-154).
- `names`: ids, tags and request ids users give.
- `tag_filters`: matching a tag against a pipeline's tag filter (RE2).
- `masks`: update masks (AIP-134) and output-only fields.
- `runs`: run state ordering and how a RunEvent changes a run.
- `filters`: the AIP-160 filter subset of ListPipelines and ListRuns.
- `page_tokens`: page sizes and opaque keyset page tokens (AIP-158) bound to their request.
- `outcomes`: what a storage operation reports back to the use cases.
"""

"""Shared API mechanics (Google AIPs), one implementation each, used by every service.

- `page_tokens`: signed, opaque keyset page tokens bound to their query (AIP-158).
- `paging`: the page_size policy (AIP-158).
- `filtering`: the AIP-160 filter subset (comparisons joined by AND or by OR).
- `field_masks`: update masks with AIP-134 semantics.
- `ids`: resource ids that are RFC-1034 labels, and time-ordered generated ones (AIP-122).

Pure: no I/O, no clocks besides the id generator's, no gRPC.
"""

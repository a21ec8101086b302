"""Generated protobuf code for conveyor.v1 (see scripts/gen_protos.py)."""

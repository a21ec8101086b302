"""conveyorctl, the operator's CLI (entry point `conveyor_ctl.main:main`)."""

import os

# gRPC core logs connection failures to stderr itself; conveyorctl reports them as one line.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

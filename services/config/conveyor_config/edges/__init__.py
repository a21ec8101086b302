"""Thin edges: the gRPC servicers (`grpc_api`), the RunEvent consumer (`run_events`), change notices (`changes`)."""

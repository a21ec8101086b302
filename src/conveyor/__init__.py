"""Conveyor's shared package: contracts (conveyor.v1), settings, logging, NATS, gRPC bootstrap."""

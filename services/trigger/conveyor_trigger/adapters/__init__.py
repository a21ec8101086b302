"""Adapters: JetStream, the pushes KV bucket, the config service, the registry, the events log, the sources file."""

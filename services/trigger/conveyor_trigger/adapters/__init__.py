"""Adapters behind the use cases' ports: JetStream, the pushes KV bucket, the config service."""

"""Edges: the webhook receiver, the EventService servicer, the matcher's message handler (thin, they call use cases)."""

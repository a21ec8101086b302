"""Use cases: plain async functions/objects over the ports in `ports`, called by the edges."""

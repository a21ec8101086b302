"""The trigger's pure domain: webhook formats and auth, matching pushes to pipelines, deterministic ids."""

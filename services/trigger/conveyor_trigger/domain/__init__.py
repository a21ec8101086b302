"""The trigger's pure domain: matching pushes to pipelines and deriving deterministic ids."""

"""Deployment manifests checked without a cluster: render, schema, structure, network paths."""

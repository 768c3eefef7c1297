"""Plumbing around the graph: config validation, provenance, container check, reruns."""

"""Operator scale benchmark: N gates on a local cluster with a real Prometheus.

``python -m bench.scale`` measures the operator's CPU, peak memory, step latency and the requests
it sends per step, and rewrites the "## Operator scale" section of docs/benchmarks.md.
"""

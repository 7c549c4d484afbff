"""Benchmarks of robustness-gate (run as modules, e.g. ``python -m bench.detection``)."""

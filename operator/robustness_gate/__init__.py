"""robustness-gate: statistical canary analysis for Kubernetes."""

__version__ = "0.1.0"

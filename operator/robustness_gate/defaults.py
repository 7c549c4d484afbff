"""Defaults that the command line and the operator's modules share. Importing nothing, so that the CLI
learns them without loading the operator (kopf, the Kubernetes client)."""

from __future__ import annotations

DEFAULT_CONCURRENCY = 16  # gates stepped at once (`run --concurrent-steps`, GateWorkers)

"""Errors every layer may raise or catch, without importing what raises them (kube.py imports the
Kubernetes client; a module that only catches its errors need not)."""

from __future__ import annotations


class KubeError(Exception):
    """An API call failed; `status` is the HTTP status (0 when the API could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status

"""What a rule did with each run: when it rolled back, promoted, or held the canary (inf = never)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Outcome:
    rollback: FloatArray  # seconds from the canary's start; inf if it never rolled back
    promote: FloatArray  # seconds; inf if it never promoted
    # seconds at which the analysis ended without rolling back or promoting (an Inconclusive that pauses);
    # None: no run was held (the peers never hold)
    held: FloatArray | None = None

    @property
    def runs(self) -> int:
        return len(self.rollback)

    @property
    def rolled_back(self) -> int:
        return int(np.isfinite(self.rollback).sum())

    @property
    def paused(self) -> int:
        return 0 if self.held is None else int(np.isfinite(self.held).sum())

    def held_times(self) -> FloatArray:
        return np.full(self.runs, np.inf) if self.held is None else self.held

    def head(self, runs: int) -> Outcome:
        return Outcome(self.rollback[:runs], self.promote[:runs], None if self.held is None else self.held[:runs])

    @staticmethod
    def concat(parts: list[Outcome]) -> Outcome:
        if not parts:
            return Outcome(np.zeros(0), np.zeros(0))
        held = None if all(p.held is None for p in parts) else np.concatenate([p.held_times() for p in parts])
        return Outcome(np.concatenate([p.rollback for p in parts]), np.concatenate([p.promote for p in parts]), held)


def first_true(flags: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Index of the first True along axis 1, or the row length when there is none."""
    index = np.argmax(flags, axis=1)
    return np.asarray(np.where(flags.any(axis=1), index, flags.shape[1]), dtype=np.int64)

"""What a rule did with each run: when it rolled back and when it promoted (inf = never)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Outcome:
    rollback: FloatArray  # seconds from the canary's start; inf if it never rolled back
    promote: FloatArray  # seconds; inf if it never promoted

    @property
    def runs(self) -> int:
        return len(self.rollback)

    @property
    def rolled_back(self) -> int:
        return int(np.isfinite(self.rollback).sum())

    @staticmethod
    def concat(parts: list[Outcome]) -> Outcome:
        return Outcome(
            np.concatenate([p.rollback for p in parts]) if parts else np.zeros(0),
            np.concatenate([p.promote for p in parts]) if parts else np.zeros(0),
        )


def first_true(flags: NDArray[np.bool_]) -> NDArray[np.int64]:
    """Index of the first True along axis 1, or the row length when there is none."""
    index = np.argmax(flags, axis=1)
    return np.asarray(np.where(flags.any(axis=1), index, flags.shape[1]), dtype=np.int64)

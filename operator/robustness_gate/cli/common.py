"""What every command shares: exit codes and input errors."""

from __future__ import annotations

import argparse

from robustness_gate.api import (
    Action,
    FieldProblem,
)

EXIT_PASS, EXIT_FAIL, EXIT_PENDING, EXIT_ERROR = 0, 1, 2, 3


EXIT_BY_ACTION = {
    Action.PROMOTE: EXIT_PASS,
    Action.ROLLBACK: EXIT_FAIL,
    Action.CONTINUE: EXIT_PENDING,
    Action.INCONCLUSIVE: EXIT_PENDING,
}


RESULT_KIND = "AnalysisResult"


class InputError(Exception):
    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = problems


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 1 to 256")
    return value

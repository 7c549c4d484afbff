"""The words of the resource: directions, tests, on-outcome actions, verdicts, actions, phases, operations."""

from __future__ import annotations

from enum import StrEnum


class Direction(StrEnum):
    INCREASE = "Increase"
    DECREASE = "Decrease"


class CompareTest(StrEnum):
    SEQUENTIAL = "Sequential"
    MANN_WHITNEY = "MannWhitney"


class DriftEffect(StrEnum):
    PSI = "PSI"
    JENSEN_SHANNON = "JensenShannon"
    WASSERSTEIN = "Wasserstein"
    KOLMOGOROV_SMIRNOV = "KolmogorovSmirnov"


class OnPass(StrEnum):
    PROMOTE = "Promote"
    PROMOTE_FULL = "PromoteFull"
    NONE = "None"


class OnFail(StrEnum):
    ROLLBACK = "Rollback"
    PAUSE = "Pause"
    NONE = "None"


class OnInconclusive(StrEnum):
    ROLLBACK = "Rollback"
    PAUSE = "Pause"
    PROMOTE = "Promote"
    NONE = "None"


class OnError(StrEnum):
    PAUSE = "Pause"
    ROLLBACK = "Rollback"
    NONE = "None"


class Verdict(StrEnum):
    PASS = "Pass"
    MARGINAL = "Marginal"
    FAIL = "Fail"
    NO_DATA = "NoData"


class Action(StrEnum):
    CONTINUE = "Continue"
    PROMOTE = "Promote"
    ROLLBACK = "Rollback"
    INCONCLUSIVE = "Inconclusive"


class Phase(StrEnum):
    PENDING = "Pending"
    ANALYZING = "Analyzing"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    PAUSED = "Paused"
    PASSED = "Passed"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    INVALID = "Invalid"
    ERROR = "Error"


class Operation(StrEnum):
    """What the operator does to the target for a decision."""

    PROMOTE = "Promote"
    PROMOTE_FULL = "PromoteFull"
    ROLLBACK = "Rollback"
    PAUSE = "Pause"
    NONE = "None"


class MetricKind(StrEnum):
    """Which source a metric reads: its spec field of the same name."""

    ERROR_RATE = "errorRate"
    RATIO = "ratio"
    LATENCY = "latency"
    DRIFT = "drift"
    CUSTOM = "custom"

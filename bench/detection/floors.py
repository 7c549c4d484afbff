"""Information-theoretic floors on the time to detect a regression (Wald 1945; Wald & Wolfowitz 1948).

Any sequential test with false-alarm rate alpha and miss rate beta needs on average at least
d(1 - beta || alpha) / KL(H1 || H0) observations under H1 (Wald's inequality; Wald's ASN formula
without overshoot equals it). Two floors per scenario:

* oracle: the baseline's distribution is known, so only the canary's observations count;
* two-sample: the baseline is estimated from its own traffic. Given an observation fell in
  category j, it came from the canary with probability rho under H0 and theta_j under H1, so the
  information per second is sum_j (c p1_j + b p0_j) KL(theta_j || rho). This is the fair floor
  for a canary-vs-baseline test.

Both are turned into seconds at the scenario's mean request rates, plus half a look because a
decision can only be taken at a look.
"""

from __future__ import annotations

import numpy as np

from bench.detection.metrics import FloatArray
from bench.detection.scenarios import Scenario

ALPHA = 0.01
BETA = 0.1


def binary_kl(a: float | FloatArray, b: float | FloatArray) -> FloatArray:
    """d(a || b) between Bernoulli(a) and Bernoulli(b), in nats."""
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(a_arr > 0, a_arr * np.log(a_arr / b_arr), 0.0)
        second = np.where(a_arr < 1, (1 - a_arr) * np.log((1 - a_arr) / (1 - b_arr)), 0.0)
    return np.asarray(first + second, dtype=float)


def wald_log_boundaries(alpha: float, beta: float) -> tuple[float, float]:
    """Wald's SPRT thresholds A = log((1 - beta) / alpha) and B = log(beta / (1 - alpha))."""
    return float(np.log((1 - beta) / alpha)), float(np.log(beta / (1 - alpha)))


def wald_asn(p0: FloatArray, p1: FloatArray, alpha: float = ALPHA, beta: float = BETA) -> float:
    """Expected observations under H1 of Wald's SPRT between categorical p0 and p1 (overshoot ignored)."""
    upper, lower = wald_log_boundaries(alpha, beta)
    seen = p1 > 0  # categories H1 never produces carry no information
    kl = float(np.sum(p1[seen] * np.log(p1[seen] / p0[seen])))
    return ((1 - beta) * upper + beta * lower) / kl


def oracle_floor_seconds(scenario: Scenario, look_seconds: float, alpha: float = ALPHA, beta: float = BETA) -> float:
    baseline, canary = scenario.probs(True)
    rate = scenario.canary_rate * scenario.on_fraction
    return wald_asn(baseline, canary, alpha, beta) / rate + look_seconds / 2


def two_sample_information(p0: FloatArray, p1: FloatArray, canary_rate: float, baseline_rate: float) -> float:
    """Nats per second carried by which side each observation came from, under H1."""
    rho = canary_rate / (canary_rate + baseline_rate)
    flow = canary_rate * p1 + baseline_rate * p0
    seen = flow > 0
    theta = canary_rate * p1[seen] / flow[seen]
    return float(np.sum(flow[seen] * binary_kl(theta, rho)))


def two_sample_floor_seconds(
    scenario: Scenario, look_seconds: float, alpha: float = ALPHA, beta: float = BETA
) -> float:
    baseline, canary = scenario.probs(True)
    info = two_sample_information(
        baseline, canary, scenario.canary_rate * scenario.on_fraction, scenario.baseline_rate * scenario.on_fraction
    )
    return float(binary_kl(1 - beta, alpha)) / info + look_seconds / 2

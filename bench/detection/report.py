"""docs/benchmarks.md: setup, targets judged from the results, one table per scenario.

Everything up to the "## Operator scale" heading is regenerated; from that heading on, the
existing file is kept as it is (another benchmark fills it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from bench.detection.floors import ALPHA, BETA
from bench.detection.ours import gate_spec
from bench.detection.peers import ArgoRule, FlaggerRule, KayentaRule
from bench.detection.run import RULES, Cell, Results, ScenarioResult
from bench.detection.scenarios import HORIZON_SECONDS, LOOK_INTERVAL, REFERENCE
from bench.detection.summary import Summary, summarise, time_quantile
from robustness_gate.api import DriftSource

TAIL_HEADING = "## Operator scale"
TAIL_DEFAULT = f"{TAIL_HEADING}\n\nMeasured by `python -m bench.scale`; see below.\n"
PEERS = RULES[1:]
MODE_NAMES = {"defaults": "defaults", "shipped": "as shipped", "once": "tuned once", "tuned": "tuned per scenario"}


@dataclass(frozen=True)
class RunInfo:
    command: str
    date: str
    machine: str
    versions: str
    png_name: str
    load: str = ""


def keep_tail(existing: str | None) -> str:
    """The part of an existing report from the "## Operator scale" heading on, or a fresh one."""
    if existing:
        for index, line in enumerate(existing.splitlines(keepends=True)):
            if line.rstrip() == TAIL_HEADING:
                return "".join(existing.splitlines(keepends=True)[index:])
    return TAIL_DEFAULT


def pct(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    return f"{100 * value:.2f}%" if value < 0.1 else f"{100 * value:.1f}%"


def duration(seconds: float) -> str:
    if math.isnan(seconds):
        return "n/a"
    if math.isinf(seconds):
        return f"> {HORIZON_SECONDS // 60} min"
    return f"{seconds / 60:.1f} min"


def _rate_ci(summary: Summary) -> str:
    low, high = summary.false_rollback.ci
    rate = summary.false_rollback
    return f"{pct(rate.value)} ({rate.events}/{rate.trials}) [{pct(low)}, {pct(high)}]"


def _ours(result: ScenarioResult) -> Cell:
    return next(c for c in result.cells if c.rule == RULES[0])


def _best_tuned_peer(result: ScenarioResult, target: float) -> tuple[Cell, Summary] | None:
    """The fastest peer tuned per scenario among those whose A/A rate reached the target."""
    matched = []
    for cell in result.cells:
        if cell.mode == "tuned":
            summary = summarise(cell.healthy, cell.regressed)
            if summary.false_rollback.value <= target:
                matched.append((summary.detect_median, cell.rule, cell, summary))
    if not matched:
        return None
    best = min(matched, key=lambda m: (m[0], m[1]))
    return best[2], best[3]


def targets(results: Results) -> list[str]:
    target = results.config.target_fpr
    lines = []
    # (1) our false-rollback rate, upper 95% bound, in every scenario
    worst = []
    met1 = True
    for result in results.scenarios:
        s = summarise(_ours(result).healthy, _ours(result).regressed)
        high = s.false_rollback.ci[1]
        met1 &= high <= target
        worst.append(f"{result.scenario.id} {pct(s.false_rollback.value)} (≤ {pct(high)})")
    lines.append(
        f"1. **robustness-gate's false-rollback rate ≤ {pct(target)} in every scenario (upper 95% bound): "
        f"{'MET' if met1 else 'MISSED'}.** " + "; ".join(worst) + "."
    )
    # (2) every peer exceeds the target somewhere, as shipped or tuned once
    met2 = True
    parts = []
    for rule in PEERS:
        found = []
        for result in results.scenarios:
            for cell in result.cells:
                if cell.rule == rule and cell.mode in ("shipped", "once"):
                    s = summarise(cell.healthy, cell.regressed)
                    if s.false_rollback.ci[0] > target:
                        found.append((s.false_rollback.value, result.scenario.id, cell.mode, s))
        met2 &= bool(found)
        if found:
            value, scenario_id, mode, s = max(found, key=lambda f: f[0])
            parts.append(
                f"{rule} in {len(found)} scenario/mode pairs, worst {pct(value)} "
                f"(lower bound {pct(s.false_rollback.ci[0])}, {scenario_id}, {MODE_NAMES[mode]})"
            )
        else:
            parts.append(f"{rule}: nowhere shown above {pct(target)}")
    lines.append(
        f"2. **Every peer, as shipped or tuned once, rolls back more than {pct(target)} of healthy canaries "
        f"somewhere (lower 95% bound above {pct(target)}): {'MET' if met2 else 'MISSED'}.** " + "; ".join(parts) + "."
    )
    # (3) at matched false rollbacks: no slower than the best per-scenario-tuned peer, and <= 2x the floor
    met3 = True
    rows = []
    for result in results.scenarios:
        ours = summarise(_ours(result).healthy, _ours(result).regressed)
        best = _best_tuned_peer(result, target)
        floor = result.two_sample_floor
        peer_ok = best is None or ours.detect_median <= best[1].detect_median
        floor_ok = ours.detect_median <= 2 * floor
        met3 &= peer_ok and floor_ok
        peer_text = (
            f"{best[0].rule} {duration(best[1].detect_median)} ({_rate_ci(best[1])})" if best else "none reached it"
        )
        rows.append(
            f"| {result.scenario.id} | {_rate_ci(ours)} | {pct(ours.detection.value)} | "
            f"{duration(ours.detect_median)} | {peer_text} | {'yes' if peer_ok else 'no'} | "
            f"{duration(floor)} | {ours.detect_median / floor:.2f}× | {_oracle_median(result)} "
            f"| {'MET' if peer_ok and floor_ok else 'MISSED'} |"
        )
    lines.append(
        f"3. **At a matched false-rollback rate (peers tuned per scenario to ≤ {pct(target)}), robustness-gate's "
        f"median time to roll back is no slower than the best peer and ≤ 2× the two-sample floor: "
        f"{'MET' if met3 else 'MISSED'}.**"
    )
    lines += [
        "",
        "| scenario | robustness-gate false rollbacks [95% CI] | regressions rolled back | median time to roll back "
        "| fastest peer tuned per scenario to ≤ 1% (its false rollbacks) | no slower? | two-sample floor "
        "| ours / floor | known regression against the tolerated ratio (median) | target 3 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
    ]
    return lines


def _oracle_median(result: ScenarioResult) -> str:
    oracle = result.tolerance_oracle
    return "n/a" if oracle is None else duration(time_quantile(oracle, 0.5))


def _oracle_note(results: Results) -> str | None:
    """Why robustness-gate's error-rate comparison cannot reach the floors, which are for a ratio of 1."""
    known = [r for r in results.scenarios if r.tolerance_oracle is not None]
    if not known:
        return None
    spec = gate_spec(known[0].scenario)
    compare = spec.metrics[0].compare
    assert compare is not None
    ratios = sorted({f"{r.scenario.p1 / r.scenario.p0:g}×" for r in known})
    medians = "; ".join(
        f"{r.scenario.id} {_oracle_median(r)} ({pct(float((r.tolerance_oracle <= HORIZON_SECONDS).mean()))} "
        f"within {HORIZON_SECONDS // 60} min)"
        for r in known
        if r.tolerance_oracle is not None
    )
    return (
        f"* {', '.join(r.scenario.id for r in known)}: robustness-gate's default `compare.tolerance` "
        f"({compare.tolerance:g}) lets a canary's error rate be up to {1 + compare.tolerance:g}× the baseline's "
        f"without failing, so the null it tests is a ratio ≤ {1 + compare.tolerance:g}, while the floors are for "
        'a ratio of 1. The column "known regression against the tolerated ratio" is a likelihood-ratio test of '
        f"that null at {pct(spec.analysis.false_positive_rate)} on the same looks that knows the regression is "
        f"exactly {' or '.join(ratios)} (`ours.oracle_at_tolerance`); robustness-gate's judge mixes over "
        f"effects it does not know and is slower than it. Its medians: {medians}."
    )


def scenario_table(result: ScenarioResult) -> list[str]:
    s = result.scenario
    lines = [
        f"### {s.title}",
        "",
        f"Runs: {result.healthy_runs:,} healthy and {result.regressed_runs:,} regressed "
        f"(Kayenta: the first {result.kayenta_runs:,} of each). Floors for α = {ALPHA:g}, β = {BETA:g}, "
        f"including half a look ({result.look_seconds / 2:.0f} s): two-sample "
        f"**{duration(result.two_sample_floor)}** ({result.two_sample_floor:.0f} s), oracle "
        f"{duration(result.oracle_floor)} ({result.oracle_floor:.0f} s).",
        "",
        "| rule | tuning | setting | false rollbacks (A/A) [95% CI] | healthy promoted, median | "
        "regressions rolled back | median time to roll back | p90 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in result.cells:
        m = summarise(cell.healthy, cell.regressed)
        name = f"**{cell.rule}**" if cell.rule == RULES[0] else cell.rule
        lines.append(
            f"| {name} | {MODE_NAMES[cell.mode]} | {cell.knob} | {_rate_ci(m)} | {duration(m.promotion_median)} | "
            f"{pct(m.detection.value)} | {duration(m.detect_median)} | {duration(m.detect_p90)} |"
        )
    lines.append("")
    return lines


def setup_text(results: Results) -> list[str]:
    f, a, k = FlaggerRule(max_value=0.0), ArgoRule(max_value=0.0), KayentaRule()
    c = results.config
    return [
        "### Setup",
        "",
        "* **Simulator** (`bench/detection/simulate.py`): 10 s ticks over a 30 min horizon; Poisson request counts "
        "for canary and baseline at the scenario's rates (bursty: a two-state on/off Markov chain, 2 min mean "
        "dwell, no traffic while off); binomial errors; lognormal latencies (median 100 ms, σ 0.5) into Prometheus' "
        "default buckets plus 320 ms; N(0, 1) prediction scores into reference-decile buckets. The regression is "
        "present from the first request. Every rule reads the same simulated streams (common random numbers).",
        f"* **robustness-gate** (`ours.py`): `RobustnessGateSpec` with the scenario's metric, everything at its "
        f"defaults except `analysis.interval: {LOOK_INTERVAL}` (the cadence of Flagger's checks); `judge_gate` "
        "and `decide` are called at every look on the per-look series so far; a run ends at its first decision. "
        "`Inconclusive` at maxDuration follows `onInconclusive` (default Rollback) and counts as a rollback.",
        f"* **Flagger**: a check every {f.interval_s} s of the canary's value over the last {f.window_s} s; "
        f"no data is a failed check; rollback at {f.threshold} cumulative failed checks (docs examples); promotion "
        f"after {f.steps} passing checks (maxWeight 50 / stepWeight 10). Rollback is counted at the failing check "
        "itself (Flagger acts one interval later).",
        f"* **Argo Rollouts**: a measurement every {a.interval_s // 60} min of the canary's value over "
        f"[{a.window_s // 60}m], `successCondition: result <= max`, failureLimit {a.failure_limit} (docs example; "
        f"Failed when failed > failureLimit), an empty result is an Error retried after {a.error_retry_s} s and "
        f"aborts after > {a.consecutive_error_limit} in a row; count {a.count} (the horizon).",
        f"* **Kayenta**: one point per {k.step_s} s per side (error rate, p99, or mean score), judged every "
        f"{k.judge_every_s // 60} min on the growing window with `robustness_gate.stats.kayenta.classify` "
        f"({100 * k.confidence:g}% confidence, tolerance {k.tolerance:g}, direction increase; either for drift); "
        "single-metric score 100 (Pass) or 0 (High, Low, Nodata, or classify's error); "
        f"fail fast at ≤ {k.marginal_score:g}, pass at the end at ≥ {k.pass_score:g}. "
        "classify runs once per judgement; the label at another confidence is read from the same Hodges-Lehmann "
        "estimate and the rank-sum statistic at the tolerance band.",
        "* **Peer tuning, one knob each** (Flagger/Argo: the threshold; Kayenta: the confidence): *as shipped* = "
        "documented values (error rate max 1% as Flagger's `request-success-rate` min 99, the SLO where one "
        "exists, p99 max 500 ms as Flagger's `request-duration`, PSI 0.25); *tuned once* = bisected to "
        f"≤ {pct(c.target_fpr)} false rollbacks on the reference A/A scenario ({REFERENCE}, 10/90 req/s) and "
        "reused at other traffic levels of the same metric (Kayenta's confidence everywhere); *tuned per "
        f"scenario* = bisected to ≤ {pct(c.target_fpr)} on that scenario's own A/A runs (a rate at least ours).",
        "* **Floors** (`floors.py`): Wald's expected sample number for the same H0 → H1 (oracle: baseline known) "
        "and the two-sample bound on which side each observation came from (baseline estimated from its own "
        "traffic, the fair floor for canary vs baseline), in seconds at the mean request rates.",
        "* Times are over **all** regressed runs: a run never rolled back counts as later than the horizon.",
        "",
    ]


DRIFT_MAX = DriftSource(histogram="x").max


def notes(results: Results) -> list[str]:
    """Facts about the setup that help read the tables (no verdicts: those are above)."""
    lines = ["### Reading the tables", ""]
    for result in results.scenarios:
        s = result.scenario
        if s.kind == "drift":
            lines.append(
                f"* {s.id}: the canary's population PSI is {s.shipped_threshold:g}, above robustness-gate's default "
                f"`drift.max` ({DRIFT_MAX:g}); a drift fails when it is significant and its PSI estimate is at or "
                "above `drift.max`, and passes only once PSI's 99% upper bound is below it."
            )
        if result.two_sample_floor > HORIZON_SECONDS / 3:
            lines.append(
                f"* {s.id}: the two-sample floor ({duration(result.two_sample_floor)}) is a large part of the "
                f"{HORIZON_SECONDS // 60} min horizon (robustness-gate's default maxDuration), so no rule that "
                "holds 1% false rollbacks can detect most regressions much earlier."
            )
        if s.bursty:
            lines.append(
                f"* {s.id}: traffic stops for 2 minutes on average half of the time. Flagger counts an empty "
                "interval as a failed check, Argo Rollouts aborts after five empty results in a row, and Kayenta "
                "scores a lone metric 0 when a judgement has no canary points (Nodata) or too few distinct ones to "
                'rank (classify\'s "all observations are tied" error) — whatever the knob, so tuning may not '
                "bring their false rollbacks down to 1%."
            )
    oracle_note = _oracle_note(results)
    lines += [
        *([oracle_note] if oracle_note else []),
        "* Argo Rollouts as configured needs failureLimit + 1 = 4 failed measurements 5 minutes apart, so it "
        "cannot roll back before 20 minutes; Flagger needs 5 failed one-minute checks.",
        "* Kayenta's false-rollback rates come from fewer runs (see each table), so their intervals are wider; its "
        "knob is tuned on those runs.",
        "",
    ]
    return lines


def render(results: Results, info: RunInfo, tail: str) -> str:
    c = results.config
    lines = [
        "# Benchmarks",
        "",
        "## Detection: time to roll back a bad canary, and false rollbacks of healthy ones",
        "",
        f"Generated by `{info.command}` (seed {c.seed}) on {info.date}: wall time {results.wall_seconds / 60:.1f} min "
        f"on {info.machine}{info.load}; {info.versions}. Do not edit by hand: the next run rewrites everything above "
        "the operator-scale section.",
        "",
        "### Targets (judged by the generator from the results below)",
        "",
        *targets(results),
        "",
        *setup_text(results),
        *notes(results),
        "### Results",
        "",
        f"![Median time to roll back against the false-rollback rate]({info.png_name})",
        "",
    ]
    for result in results.scenarios:
        lines.extend(scenario_table(result))
    return "\n".join(lines) + "\n" + tail


def write_report(results: Results, path: Path, info: RunInfo) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(results, info, keep_tail(existing)), encoding="utf-8")

"""docs/benchmarks.md: setup, targets judged from the results, the departures from the binomial model,
one table per scenario.

Everything up to the "## Operator scale" heading is regenerated; from that heading on, the
existing file is kept as it is (another benchmark fills it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.detection.floors import ALPHA, BETA
from bench.detection.ours import JUDGE_TAKES_ROBUST, gate_spec
from bench.detection.peers import ArgoRule, FlaggerRule, KayentaRule
from bench.detection.run import BINOMIAL, OURS, PEERS, Cell, Results, ScenarioResult
from bench.detection.scenarios import DETECTION_TARGET, HORIZON_SECONDS, LOOK_INTERVAL, REFERENCE, beta_sd
from bench.detection.summary import Rate, Summary, summarise, time_quantile
from robustness_gate.api import DriftSource, RobustnessGateSpec
from robustness_gate.stats import robust

TAIL_HEADING = "## Operator scale"
TAIL_DEFAULT = f"{TAIL_HEADING}\n\nMeasured by `python -m bench.scale`; see below.\n"
MODE_NAMES = {"defaults": "defaults", "shipped": "as shipped", "once": "tuned once", "tuned": "tuned per scenario"}
# What robustness may cost on clean streams: our median time to roll back at most this multiple of the
# binomial model's on the same runs of the clean binomial scenario.
COST_LIMIT = 1.25
# Under per-30 s rates with concentration 200 (DETECTION_TARGET), this share of 1% -> 2% regressions rolled back
# within the horizon.
DETECTION_SHARE = 0.8


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
    return _rate_text(summary.false_rollback)


def _rate_text(rate: Rate) -> str:
    low, high = rate.ci
    return f"{pct(rate.value)} ({rate.events}/{rate.trials}) [{pct(low)}, {pct(high)}]"


def _ours(result: ScenarioResult) -> Cell:
    return next(c for c in result.cells if c.rule == OURS)


def _binomial(result: ScenarioResult) -> Cell | None:
    return next((c for c in result.cells if c.rule == BINOMIAL), None)


def _summary(cell: Cell) -> Summary:
    return summarise(cell.healthy, cell.regressed)


def _verdict(met: bool, judged: bool = True) -> str:
    if not judged:
        return "NOT JUDGED (no such scenario in this run)"
    return "MET" if met else "MISSED"


def _best_tuned_peer(result: ScenarioResult, target: float) -> tuple[Cell, Summary] | None:
    """The fastest peer tuned per scenario among those whose A/A rate reached the target."""
    matched = []
    for cell in result.cells:
        if cell.rule in PEERS and cell.mode == "tuned":
            summary = _summary(cell)
            if summary.false_rollback.value <= target:
                matched.append((summary.detect_median, cell.rule, cell, summary))
    if not matched:
        return None
    best = min(matched, key=lambda m: (m[0], m[1]))
    return best[2], best[3]


def false_rollbacks_met(rate: Rate, target: float) -> bool:
    """The upper 95% Clopper-Pearson bound of the false-rollback rate is within the target."""
    return rate.ci[1] <= target


def cost_met(ours_median: float, binomial_median: float, limit: float = COST_LIMIT) -> bool:
    """Our median time to roll back is at most `limit` times the binomial model's (never = infinitely late)."""
    return ours_median <= limit * binomial_median


def detection_met(detection: Rate, share: float = DETECTION_SHARE) -> bool:
    return detection.value >= share


def _assumed(text: str) -> str:
    return f"*Assumed:* {text}"


def target_false_rollbacks(results: Results) -> list[str]:
    target = results.config.target_fpr
    worst = []
    met = True
    for result in results.scenarios:
        s = _summary(_ours(result))
        met &= false_rollbacks_met(s.false_rollback, target)
        worst.append(f"{result.scenario.id} {pct(s.false_rollback.value)} (≤ {pct(s.false_rollback.ci[1])})")
    runs = sorted({r.healthy_runs for r in results.scenarios})
    return [
        f"**robustness-gate's false-rollback rate ≤ {pct(target)} in every scenario, clean or not (upper 95% "
        f"Clopper-Pearson bound over the scenario's healthy runs): {_verdict(met)}.** " + "; ".join(worst) + ".",
        "   "
        + _assumed(
            "a healthy canary is one whose requests fail like its baseline's: the same mean error rate (and, "
            "for latency and drift, the same distribution), with the departures listed below hitting either "
            "side alike or at random, never the canary alone (that would be a real difference); the judge "
            "reads each look's exact count change (the operator's rewritten queries; `increase()` only where a "
            "counter reset); a look every minute up to maxDuration (30 min); and a canary held at maxDuration "
            "(Inconclusive with `onInconclusive: Pause`, the default) counts as held, not as a rollback. On "
            "the clean scenarios the tests' own proof gives the bound (Ville's inequality); beyond the "
            "binomial model it is measured only: it holds for these departures at these sizes, from "
            f"{' to '.join(f'{n:,}' for n in (runs[0], runs[-1]) if runs)} simulated healthy canaries per "
            "scenario, and says nothing of departures larger or of other kinds.",
        ),
    ]


def _times_ratio(ours: float, binomial: float) -> str:
    if math.isinf(ours) and math.isinf(binomial):
        return f"both > {HORIZON_SECONDS // 60} min"
    if math.isinf(binomial) or math.isnan(binomial) or math.isnan(ours):
        return "n/a"
    return f"{ours / binomial:.2f}×"


def _earliest(cell: Cell) -> float:
    rollback = cell.regressed.rollback
    return float(rollback.min()) if len(rollback) else math.nan


def target_cost(results: Results) -> list[str]:
    """What robustness costs on clean streams: the robust judge's median time to roll back against the
    binomial model's, on the same regressed runs. Judged on the clean binomial scenario, shown for all clean."""
    rows = []
    judged: tuple[Summary, Summary, Cell, Cell] | None = None
    for result in results.scenarios:
        cell = _binomial(result)
        if not result.scenario.clean or cell is None:
            continue
        ours, binomial = _summary(_ours(result)), _summary(cell)
        ok = cost_met(ours.detect_median, binomial.detect_median)
        is_target = result.scenario.id == REFERENCE
        if is_target:
            judged = (ours, binomial, _ours(result), cell)
        rows.append(
            f"| {result.scenario.id} | {duration(ours.detect_median)} | {duration(binomial.detect_median)} | "
            f"{_times_ratio(ours.detect_median, binomial.detect_median)} | {duration(_earliest(_ours(result)))} / "
            f"{duration(_earliest(cell))} | {pct(ours.detection.value)} / {pct(binomial.detection.value)} | "
            f"{_verdict(ok) if is_target else ('within' if ok else 'beyond') + ' (not judged)'} |"
        )
    if judged is None:
        head = (
            f"**On the clean binomial scenario ({REFERENCE}), robustness-gate's median time to roll back is at "
            f"most {COST_LIMIT:g}× the binomial model's on the same runs: {_verdict(False, False)}.**"
        )
    else:
        ours, binomial, ours_cell, binomial_cell = judged
        head = (
            f"**On the clean binomial scenario ({REFERENCE}), robustness-gate's median time to roll back is at "
            f"most {COST_LIMIT:g}× the binomial model's on the same runs: "
            f"{_verdict(cost_met(ours.detect_median, binomial.detect_median))}.** Measured: "
            f"{duration(ours.detect_median)} against {duration(binomial.detect_median)}, "
            f"{_times_ratio(ours.detect_median, binomial.detect_median)} (limit {COST_LIMIT:g}×); the earliest "
            f"rollback of any run: {duration(_earliest(ours_cell))} against {duration(_earliest(binomial_cell))}. "
            "How the robust comparison keeps pace (operator/robustness_gate/stats/robust.py): it decides on the "
            "binomial likelihood ratio itself while every look so far, on both sides, is as dispersed as "
            f"binomial counts (Pearson's statistic, p > {robust.FAST_PATH_P:g}, from look "
            f"{robust.FAST_PATH_LOOKS} on), and otherwise needs its capped, dispersion-weighted evidence as "
            f"well. So on clean counts it pays only for the first {robust.FAST_PATH_LOOKS - 1} looks, in which "
            "no dispersion can be seen yet, and for the runs in which the dispersion test fails by chance "
            f"({robust.FAST_PATH_P:.0%} of looks). Without that path (a per-look cap of 1.5 always) the median "
            "was 7.0 min; a cap of 2.5 instead was faster but rolled back 1.75% of healthy canaries at "
            "concentration 50, and a cap that grows without limit once the looks before are as dispersed as "
            "binomial ones 1.65%, because a look that bursts is not yet in the dispersion estimate that "
            "weighs it."
        )
    return [
        head,
        "   "
        + _assumed(
            f"streams exactly as the binomial model has them ({REFERENCE}: Poisson traffic at 10/90 req/s, every "
            "request an independent trial at 1% on the baseline and 2% on a bad canary, looks every minute), "
            "and both judges on the same regressed runs. The other clean scenarios are shown for context and "
            "not judged.",
        ),
        "",
        "   | scenario | robustness-gate median time to roll back | binomial model | ratio | earliest rollback "
        "(robust / binomial) | regressions rolled back (robust / binomial) | target 2 |",
        "   | --- | --- | --- | --- | --- | --- | --- |",
        *(f"   {row}" for row in rows),
    ]


def target_detection(results: Results) -> list[str]:
    found = [r for r in results.scenarios if r.scenario.id == DETECTION_TARGET]
    head = (
        f"**Under rates Beta-distributed per 30 s with concentration 200 ({DETECTION_TARGET}), robustness-gate "
        f"rolls back ≥ {100 * DETECTION_SHARE:.0f}% of 1% → 2% regressions within {HORIZON_SECONDS // 60} min: "
    )
    if not found:
        return [head + f"{_verdict(False, False)}.**"]
    s = _summary(_ours(found[0]))
    binomial = _binomial(found[0])
    versus = ""
    if binomial is not None:
        b = _summary(binomial)
        versus = (
            f" The binomial model rolls back {pct(b.detection.value)} (median {duration(b.detect_median)}), but "
            f"also {pct(b.false_rollback.value)} of the healthy canaries."
        )
    return [
        head + f"{_verdict(detection_met(s.detection))}.** {_rate_text(s.detection)}, median "
        f"{duration(s.detect_median)}, p90 {duration(s.detect_p90)}; promoted: "
        f"{pct(float(np.isfinite(found[0].cells[0].regressed.promote).mean()))}.{versus}",
        "   "
        + _assumed(
            "each side's error rate redrawn every 30 s from a Beta with mean 1% (2% for the bad canary) and "
            f"concentration 200 (standard deviation {100 * beta_sd(0.01, 200):.2g} points), independently per "
            "side; the regression present from the first request and the same size throughout; Poisson "
            "traffic at 10/90 req/s; a look every minute; maxDuration 30 min (then a canary with no harm "
            "shown is promoted).",
        ),
    ]


def targets(results: Results) -> list[str]:
    first, cost, detection = target_false_rollbacks(results), target_cost(results), target_detection(results)
    return [
        f"1. {first[0]}",
        *first[1:],
        f"2. {cost[0]}",
        *cost[1:],
        f"3. {detection[0]}",
        *detection[1:],
    ]


def overview(results: Results) -> list[str]:
    """One row per scenario: both count models' false rollbacks, holds and detection."""
    lines = [
        "### Every scenario at a glance",
        "",
        "robustness-gate (the default, robust judge) and the same judge with the binomial model alone "
        "(`judge_gate(..., robust=False)`), on the same runs. Held: ended at maxDuration as Inconclusive and "
        "paused (`onInconclusive: Pause`, the default), neither rolled back nor promoted.",
        "",
        "| scenario | departure | false rollbacks, robust [95% CI] | held, A/A | false rollbacks, binomial model "
        "[95% CI] | regressions rolled back (robust / binomial) | median time to roll back (robust / binomial) "
        "| held, A/B (robust) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for result in results.scenarios:
        ours = _summary(_ours(result))
        cell = _binomial(result)
        binomial = _summary(cell) if cell is not None else None
        lines.append(
            f"| {result.scenario.id} | {'yes' if not result.scenario.clean else 'no'} | {_rate_ci(ours)} | "
            f"{_held(ours.healthy_held)} | {_rate_ci(binomial) if binomial else 'n/a'} | "
            f"{pct(ours.detection.value)} / {pct(binomial.detection.value) if binomial else 'n/a'} | "
            f"{duration(ours.detect_median)} / {duration(binomial.detect_median) if binomial else 'n/a'} | "
            f"{_held(ours.regressed_held)} |"
        )
    lines.append("")
    return lines


def peers_and_floors(results: Results) -> list[str]:
    """The clean scenarios against the peers (tuned per scenario to the same false rollbacks) and the floors:
    context, no target."""
    target = results.config.target_fpr
    rows = []
    clean = [r for r in results.scenarios if r.scenario.clean]
    if not clean:
        return []
    for result in clean:
        ours = _summary(_ours(result))
        best = _best_tuned_peer(result, target)
        floor = result.two_sample_floor
        peer_ok = best is None or ours.detect_median <= best[1].detect_median
        peer_text = (
            f"{best[0].rule} {duration(best[1].detect_median)} ({_rate_ci(best[1])})" if best else "none reached it"
        )
        rows.append(
            f"| {result.scenario.id} | {_rate_ci(ours)} | {pct(ours.detection.value)} | "
            f"{duration(ours.detect_median)} | {peer_text} | {'yes' if peer_ok else 'no'} | "
            f"{duration(floor)} | {ours.detect_median / floor:.2f}× | {_oracle_median(result)} |"
        )
    return [
        "### Clean scenarios: the peers and the floors",
        "",
        f"{_peer_sentence(results)} At a matched false-rollback rate (each peer tuned per scenario to "
        f"≤ {pct(target)} on that scenario's healthy runs), robustness-gate's median time to roll back against "
        "the fastest such peer and the two-sample floor (for the binomial model):",
        "",
        "| scenario | robustness-gate false rollbacks [95% CI] | regressions rolled back | median time to roll back "
        "| fastest peer tuned per scenario to ≤ 1% (its false rollbacks) | no slower? | two-sample floor "
        "| ours / floor | known regression against the tolerated ratio (median) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ]


def _peer_sentence(results: Results) -> str:
    target = results.config.target_fpr
    parts = []
    for rule in PEERS:
        found = []
        for result in results.scenarios:
            for cell in result.cells:
                if cell.rule == rule and cell.mode in ("shipped", "once"):
                    s = _summary(cell)
                    if s.false_rollback.ci[0] > target:
                        found.append((s.false_rollback.value, result.scenario.id, cell.mode, s))
        if found:
            value, scenario_id, mode, s = max(found, key=lambda f: f[0])
            parts.append(
                f"{rule} in {len(found)} scenario/mode pairs (worst {pct(value)}, lower bound "
                f"{pct(s.false_rollback.ci[0])}, {scenario_id}, {MODE_NAMES[mode]})"
            )
        else:
            parts.append(f"{rule} nowhere")
    return (
        f"Over all scenarios, as shipped or tuned once, the peers roll back more than {pct(target)} of healthy "
        "canaries (lower 95% bound above it) in: " + "; ".join(parts) + "."
    )


def departures(results: Results) -> list[str]:
    """What each scenario beyond the clean model simulates."""
    beyond = [r for r in results.scenarios if not r.scenario.clean]
    if not beyond:
        return []
    lines = [
        "### Beyond the binomial model",
        "",
        "The clean scenarios simulate exactly the model robustness-gate's count tests assume: Poisson traffic "
        "and every request an independent Bernoulli trial at one error rate per side. Each of these scenarios "
        "departs from it in one way:",
        "",
    ]
    for result in beyond:
        s = result.scenario
        lines.append(f"* **{s.id}** ({s.title}): {s.departure}.")
    lines.append("")
    return lines


def _held(rate: Rate | None) -> str:
    return "—" if rate is None else f"{pct(rate.value)} ({rate.events}/{rate.trials})"


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


def _paused(summary: Summary) -> str:
    if summary.healthy_held is None or summary.regressed_held is None:
        return "—"
    return f"{pct(summary.healthy_held.value)} · {pct(summary.regressed_held.value)}"


def scenario_table(result: ScenarioResult) -> list[str]:
    s = result.scenario
    departure = f"Departure from the binomial model: {s.departure}. " if s.departure else ""
    floor_model = " (for the binomial model at these mean rates)" if s.overdispersed else ""
    lines = [
        f"### {s.title}",
        "",
        f"{departure}Runs: {result.healthy_runs:,} healthy and {result.regressed_runs:,} regressed "
        f"(Kayenta: the first {result.kayenta_runs:,} of each). Floors{floor_model} for α = {ALPHA:g}, "
        f"β = {BETA:g}, including half a look ({result.look_seconds / 2:.0f} s): two-sample "
        f"**{duration(result.two_sample_floor)}** ({result.two_sample_floor:.0f} s), oracle "
        f"{duration(result.oracle_floor)} ({result.oracle_floor:.0f} s).",
        "",
        "| rule | tuning | setting | false rollbacks (A/A) [95% CI] | healthy promoted, median | "
        "paused at maxDuration (A/A · A/B) | regressions rolled back | median time to roll back | p90 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell in result.cells:
        m = _summary(cell)
        name = f"**{cell.rule}**" if cell.rule == OURS else cell.rule
        lines.append(
            f"| {name} | {MODE_NAMES[cell.mode]} | {cell.knob} | {_rate_ci(m)} | {duration(m.promotion_median)} | "
            f"{_paused(m)} | {pct(m.detection.value)} | {duration(m.detect_median)} | {duration(m.detect_p90)} |"
        )
    lines.append("")
    return lines


def _on_inconclusive_default() -> str:
    return str(RobustnessGateSpec.model_fields["on_inconclusive"].default)


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
        "* **Departures** (`departures.py`, the scenarios beyond the binomial model): rates drawn per period or "
        "switched by blips and bursts are per-request error probabilities, applied to every 10 s tick of the "
        "period: a tick's errors are Binomial(its requests, that probability). Beta rates are redrawn every "
        "30 s (twice per look), independently per side (and per metric); a bad canary's Beta mean is 2%, and "
        "where the departure is blips or bursts its error probability is twice the healthy one at every tick. "
        "A fleet is simulated pod by pod with Prometheus scraping every pod at every tick; robustness-gate reads "
        "each side's sum over its pods of the per-look counts its rewritten queries return (a counter's exact "
        "change between looks, or, where that is negative after a restart or the series is new, "
        "`increase(x[1m])` as Prometheus 3 computes it: reset-corrected and extrapolated to the window's start), "
        "while the peers read the ticks' counts, less the requests a restart lost.",
        f"* **robustness-gate** (`ours.py`): `RobustnessGateSpec` with the scenario's metrics, everything at their "
        f"defaults except `analysis.interval: {LOOK_INTERVAL}` (the cadence of Flagger's checks); `judge_gate` "
        "and `decide` are called at every look on the per-look series so far; a run ends at its first decision. "
        "`Inconclusive` at maxDuration follows `onInconclusive` (default "
        f"{_on_inconclusive_default()}): Rollback counts as a rollback, Promote as a promotion, Pause and None as "
        "paused (neither). A gate of several metrics splits its false-rollback budget over their tests itself.",
        "* **robustness-gate (binomial model)**: the same judge with `robust=False`, whose count tests take every "
        "request as an independent Bernoulli trial at one rate per side (the tests before the robust ones), on "
        "the same runs.",
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
        "* **Several metrics** (five-metrics): robustness-gate's five count metrics are all `critical`, so one "
        "failing metric rolls the canary back (without it, one failure of five equally weighted metrics leaves a "
        "score of 80, not below `scoring.marginal`). Each peer checks every metric against the same threshold, as a "
        "user would write one condition per metric: a Flagger check fails when any metric fails, each Argo "
        "Rollouts metric counts its own failures and any Failed metric aborts, Kayenta's score is the mean of the "
        "metrics' scores (one group, equal weights).",
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


def _scoring_note(result: ScenarioResult) -> str | None:
    """Why a gate of several equally weighted metrics, none critical, may hold rather than roll back on one."""
    spec = gate_spec(result.scenario)
    metrics = len(spec.metrics)
    if metrics < 2 or all(m.critical for m in spec.metrics):
        return None
    left = 100.0 * (metrics - 1) / metrics
    if left < spec.scoring.marginal:
        return None
    return (
        f"* {result.scenario.id}: with {metrics} equally weighted metrics and the default scoring "
        f"(marginal {spec.scoring.marginal}), one failed metric leaves a score of {left:g}, not below marginal, so "
        "the gate does not roll back on it alone: it rolls back once a second metric fails, and otherwise ends "
        "Inconclusive at maxDuration (paused, with the default onInconclusive). A metric marked `critical` would "
        "roll back on its own."
    )


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
        scoring = _scoring_note(result)
        if scoring:
            lines.append(scoring)
    oracle_note = _oracle_note(results)
    lines += [
        "* Paused at maxDuration: the analysis reached maxDuration without a verdict (Inconclusive, e.g. traffic "
        "below minTraffic all along) and `onInconclusive` is Pause or None, so the canary is left where it is for "
        "a person to promote or abort. Such a run is neither a rollback (not a false rollback of a healthy "
        "canary, not a detected regression) nor a promotion; the column gives its share of healthy and of "
        "regressed runs. The peers never pause (—).",
        *([oracle_note] if oracle_note else []),
        "* Argo Rollouts as configured needs failureLimit + 1 = 4 failed measurements 5 minutes apart, so it "
        "cannot roll back before 20 minutes; Flagger needs 5 failed one-minute checks.",
        "* Kayenta's false-rollback rates come from fewer runs (see each table), so their intervals are wider; its "
        "knob is tuned on those runs.",
        *(
            []
            if JUDGE_TAKES_ROBUST
            else ["* This judge has no `robust` switch: both robustness-gate rows are its count tests alike."]
        ),
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
        *overview(results),
        *peers_and_floors(results),
        *departures(results),
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

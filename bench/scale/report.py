"""The "## Operator scale" section of docs/benchmarks.md: targets judged from the measurements, then tables.

Only that section (from its heading to the end of the file) is rewritten; everything above it
belongs to other benchmarks and is kept byte for byte.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from bench.scale import measure
from bench.scale.run import (
    INTERVAL_SECONDS,
    MACHINE,
    METRICS_PER_GATE,
    SCRAPE_INTERVAL,
    STEP_CPU_PARTS,
    Measurement,
)

HEADING = "## Operator scale"
TARGET_GATES = 500
MAX_CORES = 1.0
KEEP_UP = 0.95  # share of the expected steps per second that counts as keeping up
MAX_RSS_MIB = 300.0
MAX_STEP_SECONDS = 1.0
MAX_QUERIES_PER_METRIC = 1.0
EDGE_TOLERANCE = 0.01  # steps in flight at the window's edges are counted on one side only


@dataclass(frozen=True)
class RunInfo:
    command: str
    date: str
    machine: str
    python: str
    load: str
    # (looks, CPU milliseconds) of one judge call for the benchmark's gate (bench/scale/judge_cost.py)
    judge: list[tuple[int, float]] = field(default_factory=list)


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def _num(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _ms(seconds: float) -> str:
    return "n/a" if math.isnan(seconds) else f"{1000 * seconds:.0f} ms"


def _step(m: Measurement, q: float) -> str:
    """A step-time quantile; beyond the largest finite bucket only a lower bound is known."""
    return _quantile(m.step_buckets, q)


def _quantile(buckets: list[tuple[float, float]], q: float) -> str:
    if not buckets or buckets[-1][1] <= 0:
        return "n/a"
    finite = [bound for bound, _ in buckets if not math.isinf(bound)]
    if finite and measure.share_at_most(finite[-1], buckets) < q:
        return f"> {finite[-1]:g} s"
    return _ms(measure.quantile(q, buckets))


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def edge_uncertainty(m: Measurement) -> float:
    """Relative error of a per-step ratio from steps under way at the window's edges (at least 1%)."""
    return max(EDGE_TOLERANCE, m.in_flight / m.steps if m.steps else math.inf)


def keeps_up(m: Measurement) -> bool:
    return m.steps_per_second >= KEEP_UP * m.expected_steps_per_second


def targets(results: list[Measurement], failures: dict[int, str] | None = None) -> list[str]:
    lines = []
    big = next((m for m in results if m.gates == TARGET_GATES), None)
    if big is None:
        largest = max((m.gates for m in results), default=0)
        reason = (failures or {}).get(TARGET_GATES, f"not run; largest run: {largest} gates")
        lines.append(f"1. **{TARGET_GATES} gates on one core: NOT MEASURED** ({reason}).")
    else:
        ok = big.cpu_share <= MAX_CORES and keeps_up(big)
        detail = (
            f"{_num(big.cpu_share)} cores (CPU seconds per wall second) while stepping "
            f"{_num(big.steps_per_second, 1)} gates/s of the {_num(big.expected_steps_per_second, 1)} due"
        )
        if not ok:
            over = []
            if big.cpu_share > MAX_CORES:
                over.append(f"CPU {_pct(big.cpu_share / MAX_CORES - 1)} over one core")
            if not keeps_up(big):
                over.append(
                    f"only {_pct(big.steps_per_second / big.expected_steps_per_second)} of the due steps "
                    f"taken, with steps taking {_step(big, 0.5)} at the median"
                )
            detail += f"; missed: {', '.join(over)}"
            needed = big.cpu_per_step * big.expected_steps_per_second
            detail += (
                f". At its {_ms(big.cpu_per_step)} of CPU per step, {big.gates} gates would need {_num(needed)} cores"
            )
            if needed > MAX_CORES:
                detail += f", {_num(needed / MAX_CORES)}× the target"
            others = [m for m in results if m is not big]
            if others:
                detail += " (" + ", ".join(f"N={m.gates}: {_ms(m.cpu_per_step)}" for m in others) + " per step)"
            if big.machine_cpu.get(MACHINE):
                detail += f"; {machine_sentence(big)}"
            if big.profile is not None and big.profile.layers:
                layer, share = big.profile.layers[0]
                detail += f"; the largest share of its CPU goes to {layer} ({_pct(share)}, profile below)"
        lines.append(
            f"1. **{TARGET_GATES} gates on one core (≤ {MAX_CORES:g} core, keeping up): {_verdict(ok)}.** {detail}."
        )
    rss_ok = all(m.peak_rss_mib <= MAX_RSS_MIB for m in results)
    rss = "; ".join(f"N={m.gates}: {m.peak_rss_mib:.0f} MiB" for m in results)
    lines.append(f"2. **Peak RSS ≤ {MAX_RSS_MIB:.0f} MiB: {_verdict(rss_ok)}.** {rss}.")
    step_ok = all(m.within_one_second >= 0.99 for m in results)
    steps = "; ".join(f"N={m.gates}: {_pct(m.within_one_second)} of steps ≤ 1 s, p99 {_step(m, 0.99)}" for m in results)
    lines.append(f"3. **Step p99 ≤ {MAX_STEP_SECONDS:g} s: {_verdict(step_ok)}.** {steps}.")
    query_ok = all(m.queries_per_metric_step <= MAX_QUERIES_PER_METRIC * (1 + edge_uncertainty(m)) for m in results)
    queries = "; ".join(
        f"N={m.gates}: {_num(m.queries_per_metric_step, 3)} (± {_pct(edge_uncertainty(m))})" for m in results
    )
    lines.append(
        f"4. **≤ {MAX_QUERIES_PER_METRIC:g} Prometheus query per metric per step: {_verdict(query_ok)}.** "
        f"{queries}; the ± is for steps under way at the window's edges, whose queries are counted "
        "before the step is."
    )
    return lines


def results_table(results: list[Measurement]) -> list[str]:
    lines = [
        "| gates | window | CPU (cores) | CPU per step | peak RSS | steps/s (due) | step p50 | step p99 | steps ≤ 1 s "
        "| start late by (p50 / p99) "
        "| queries per metric·step (operator / Prometheus) | API requests per step | Prometheus errors "
        "| gates Analyzing | looks per gate |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in results:
        served = m.per_step(m.prometheus_query_range_requests) / METRICS_PER_GATE
        lines.append(
            f"| {m.gates} | {m.window_seconds:.0f} s | {_num(m.cpu_share)} | {_ms(m.cpu_per_step)} "
            f"| {m.peak_rss_mib:.0f} MiB "
            f"| {_num(m.steps_per_second, 1)} ({_num(m.expected_steps_per_second, 1)}) | {_step(m, 0.5)} "
            f"| {_step(m, 0.99)} | {_pct(m.within_one_second)} "
            f"| {_quantile(m.lateness_buckets, 0.5)} / {_quantile(m.lateness_buckets, 0.99)} "
            f"| {_num(m.queries_per_metric_step, 3)} / "
            f"{_num(served, 3)} | {_num(m.api_requests_per_step)} | {m.prometheus_errors:.0f} "
            f"| {m.analysing}/{m.gates} | {_num(m.mean_looks, 0)} |"
        )
    return lines


def _per_gate_count_header(label: str, results: list[Measurement]) -> list[str]:
    """The header of a table with one row per `label` and one column per gate count."""
    return [
        f"| {label} | " + " | ".join(f"N={m.gates}" for m in results) + " |",
        "| --- | " + " | ".join("---:" for _ in results) + " |",
    ]


def api_table(results: list[Measurement]) -> list[str]:
    kinds = sorted({key for m in results for key, value in m.api_requests.items() if value > 0})
    lines = [
        *_per_gate_count_header("request", results),
    ]
    for key in kinds:
        lines.append(f"| {key} | " + " | ".join(_num(m.per_step(m.api_requests.get(key, 0.0))) for m in results) + " |")
    return lines


PART_NAMES = {
    "read": "read gate and target",
    "prometheus": "Prometheus query and answer",
    "judge": "judge",
    "status": "status write and Events",
    "other": "rest of the step",
}


def cpu_parts_table(results: list[Measurement]) -> list[str]:
    """CPU milliseconds per step by part (the step threads' own CPU time), and the process's CPU outside steps."""
    measured = [m for m in results if m.step_cpu and m.steps > 0]
    if not measured:
        return []
    lines = [
        "Where a step's CPU goes, in milliseconds per step: each part's thread CPU time "
        '(`robustness_gate_step_cpu_seconds_total`) over the window\'s steps; "outside steps" is the rest of the '
        "process's CPU (kopf's watch streams and their events, the metrics and verdict endpoints, timers, the "
        "interpreter's thread switches).",
        "",
        *_per_gate_count_header("part", measured),
    ]
    for part in STEP_CPU_PARTS:
        lines.append(
            f"| {PART_NAMES[part]} | "
            + " | ".join(_num(1000 * m.per_step(m.step_cpu.get(part, 0.0)), 1) for m in measured)
            + " |"
        )
    outside = [m.cpu_seconds - sum(m.step_cpu.values()) for m in measured]
    lines.append(
        "| outside steps | "
        + " | ".join(_num(1000 * m.per_step(o), 1) for m, o in zip(measured, outside, strict=True))
        + " |"
    )
    lines.append("| **all** | " + " | ".join(f"**{_num(1000 * m.cpu_per_step, 1)}**" for m in measured) + " |")
    return [*lines, ""]


# Processes of the set-up, in the order shown; the cluster's names are hack/localcluster/'s.
PROCESS_NAMES = {
    "operator": "operator",
    "prometheus": "Prometheus",
    "exporter": "exporter (the services' series)",
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kube-controller-manager": "kube-controller-manager",
    "kube-scheduler": "kube-scheduler",
    "kwok": "kwok",
}


def cores(m: Measurement, name: str) -> float:
    return m.machine_cpu.get(name, math.nan) / m.window_seconds


def machine_sentence(m: Measurement) -> str:
    """How busy the machine was, the processes that took most of it besides the operator, and what they would
    take at the due rate (their CPU scaled by due / taken steps: each step costs each of them about the same)."""
    known = [name for name in PROCESS_NAMES if name != "operator" and name in m.machine_cpu]
    biggest = sorted(known, key=lambda name: -m.machine_cpu[name])[:3]
    others = ", ".join(f"{PROCESS_NAMES[name]} {_num(cores(m, name))}" for name in biggest)
    text = (
        f"the machine's CPUs were {_num(cores(m, MACHINE))} cores busy in all (the operator "
        f"{_num(cores(m, 'operator'))}, {others}; table below)"
    )
    if not keeps_up(m) and m.steps_per_second > 0:
        scale = m.expected_steps_per_second / m.steps_per_second
        busy = cores(m, MACHINE) * scale
        top = ["operator", *biggest[:2]]
        parts = " + ".join(f"{PROCESS_NAMES[name]} {_num(cores(m, name) * scale)}" for name in top)
        text += f". At the due rate these would need about {_num(busy)} cores ({parts}, …)" + (
            f", more than the machine's {m.cpus} CPUs" if m.cpus and busy > m.cpus else ""
        )
    return text


def machine_table(results: list[Measurement]) -> list[str]:
    """Cores (CPU seconds per wall second) of every process of the set-up, and of the whole machine."""
    measured = [m for m in results if m.machine_cpu.get(MACHINE)]
    if not measured:
        return []
    lines = [
        "Where the machine's CPU goes, in cores (CPU seconds per wall second over the window): utime + stime "
        'of each process from `/proc/<pid>/stat`; "whole machine" is the busy time of all CPUs from '
        "`/proc/stat`, so it also holds other jobs and the kernel.",
        "",
        *_per_gate_count_header("process", measured),
    ]
    for name, title in PROCESS_NAMES.items():
        if any(name in m.machine_cpu for m in measured):
            lines.append(f"| {title} | " + " | ".join(_num(cores(m, name)) for m in measured) + " |")
    accounted = [sum(v for k, v in m.machine_cpu.items() if k != MACHINE) / m.window_seconds for m in measured]
    lines.append(
        "| everything else | "
        # max: the two readings are not taken at the same instant, so a near-zero rest can come out negative
        + " | ".join(_num(max(0.0, cores(m, MACHINE) - a)) for m, a in zip(measured, accounted, strict=True))
        + " |"
    )
    lines.append("| **whole machine** | " + " | ".join(f"**{_num(cores(m, MACHINE))}**" for m in measured) + " |")
    return [*lines, ""]


def judge_lines(judge: list[tuple[int, float]], interval: float) -> list[str]:
    if not judge:
        return []
    lines = [
        "CPU time of the judge alone for one step of this gate, by the analysis' age (in-process, on seeded "
        "data shaped like the exporter's: `bench/scale/judge_cost.py`). A step judges every look since the "
        "analysis started:",
        "",
        "| looks | analysis age | judge CPU per step |",
        "| ---: | ---: | ---: |",
    ]
    for looks, milliseconds in judge:
        lines.append(f"| {looks} | {looks * interval / 60:.0f} min | {milliseconds:.1f} ms |")
    return [*lines, ""]


def profile_section(results: list[Measurement]) -> list[str]:
    profiled = [m for m in results if m.profile is not None and m.profile.samples]
    if not profiled:
        return ["No profile was taken (py-spy missing from the virtualenv, or profiling disabled)."]
    lines: list[str] = []
    for m in profiled:
        assert m.profile is not None
        lines += [
            f"N={m.gates}: {m.profile.samples} py-spy samples of the thread holding the GIL "
            "(`py-spy record --gil`), each counted for the innermost layer it runs in. While the GIL passes "
            "from one thread to another, py-spy counts the thread that last held it, where it let go: shares "
            "are of time with the GIL, not of CPU time (the table above has CPU time by part).",
            "",
            "| layer | share of samples |",
            "| --- | ---: |",
            *(f"| {name} | {_pct(share)} |" for name, share in m.profile.layers),
            "",
            "| innermost function | share of samples |",
            "| --- | ---: |",
            *(f"| `{name}` | {_pct(share)} |" for name, share in m.profile.functions),
            "",
        ]
    return lines


def render(results: list[Measurement], info: RunInfo, failures: dict[int, str] | None = None) -> str:
    lines = [
        HEADING,
        "",
        f"Generated by `{info.command}` on {info.date}: {info.machine}; Python {info.python}; "
        f"load average {info.load} before the run (other jobs share the machine). Do not edit by hand: the "
        "next run rewrites this section.",
        "",
        "### Targets (judged by the generator from the results below)",
        "",
        *targets(results, failures),
        "",
        "### Results",
        "",
        *results_table(results),
        "",
        *(f"N={count} was not measured: {reason}." for count, reason in sorted((failures or {}).items())),
        *([""] if failures else []),
        "Kubernetes API requests per step, by verb and kind (from `robustness_gate_api_requests_total`). A "
        "step reads its gate from the API only when the watch's copy is not the version its own last status "
        "write made, and its target Deployments and ReplicaSets from kopf's watches "
        "(`operator/robustness_gate/watched.py`) unless the watch lacks them:",
        "",
        *api_table(results),
        "",
        *cpu_parts_table(results),
        *machine_table(results),
        *judge_lines(info.judge, INTERVAL_SECONDS),
        "### Setup",
        "",
        "* One local cluster (etcd, kube-apiserver, controller-manager, scheduler, kwok fake nodes; "
        "`hack/localcluster/`) on 127.0.0.1. Per N, a namespace with N canary/stable Deployment pairs "
        "(1 replica each, pods Running on kwok nodes).",
        f"* One exporter process (`bench/scale/exporter.py`) serves every pair's series: request counters by "
        "code, a latency histogram (12 buckets) and a prediction-score histogram (11 buckets), per pod-template "
        f"hash; a real Prometheus (`hack/promlab.py`) scrapes it every {SCRAPE_INTERVAL}.",
        f"* N gates (`hack/scenario.py`'s error rate, latency p99 and prediction drift: {METRICS_PER_GATE} "
        f"metrics), interval {INTERVAL_SECONDS:g} s, minDuration 1h, maxDuration 2h, so every gate keeps "
        "analysing (Continue). They are created evenly over one interval, as independent releases would start "
        "them, while the operator (`robustness-gate run --namespace <ns>`, a child process) runs.",
        "* After every gate has taken a look and a warm-up, the window starts. CPU is utime + stime of the "
        "operator from `/proc/<pid>/stat`, per wall second; peak RSS is `VmHWM` from `/proc/<pid>/status` at "
        "the end (the whole life of the process). Steps, step latency, queries and API requests are the "
        "differences of the operator's own counters and `robustness_gate_analysis_step_seconds` histogram "
        'across the window; Prometheus\' `prometheus_http_requests_total{handler="/api/v1/query_range"}` '
        "cross-checks the query count. p50/p99 are interpolated within histogram buckets as "
        '`histogram_quantile` does; "steps ≤ 1 s" is exact (1 s is a bucket bound). A step\'s time is '
        'from its start to its end; "start late by" is from when it fell due to when one of the operator\'s '
        "`--concurrent-steps` threads (16) started it (`robustness_gate_step_lateness_seconds`).",
        "* Each gate keeps one Prometheus connection and its per-look series across steps "
        "(`operator/robustness_gate/metrics/cache.py`): a step asks Prometheus only for the looks it has not "
        "fetched, plus the last 2 again (late samples), in one query for all the gate's metrics, so a step's "
        "Prometheus answer and its parsing do not grow "
        "with the analysis' age. The judge still reads every look, so its work grows with the looks taken: these "
        'numbers hold for analyses of the age in the "looks per gate" column; a gate at a 1 h minDuration has '
        f"{3600 / INTERVAL_SECONDS:.0f} looks. A restarted operator starts with an empty cache and fetches every "
        "look since the analysis started once.",
        f'* "On one core": at most {MAX_CORES:g} CPU second per wall second while stepping at least '
        f"{100 * KEEP_UP:.0f}% of the N/{INTERVAL_SECONDS:g}s steps due. Per-step ratios are uncertain by the "
        "steps under way at the window's edges, estimated by Little's law (steps per second × mean step time, "
        f"at least {100 * EDGE_TOLERANCE:.0f}%).",
        "* The apiserver, etcd, Prometheus, the exporter and the operator share the machine's CPUs with each "
        "other and with the other jobs in the load average above: step times include their queueing.",
        "",
        "### Profile",
        "",
        *profile_section(results),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def replace_section(existing: str | None, section: str) -> str:
    """`existing` up to the heading, then `section`; the section alone if there is no file yet."""
    if not existing:
        return section
    lines = existing.splitlines(keepends=True)
    for index, line in enumerate(lines):
        if line.rstrip() == HEADING:
            return "".join(lines[:index]) + section
    return existing.rstrip("\n") + "\n\n" + section


def write_report(path: Path, results: list[Measurement], info: RunInfo, failures: dict[int, str] | None = None) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else None
    path.write_text(replace_section(existing, render(results, info, failures)), encoding="utf-8")

"""The pure parts of bench.scale: /proc parsing, histogram quantiles from the text format, the synthetic
exporter's series, the profile summary, and a report that keeps the other sections of docs/benchmarks.md."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from bench.scale import exporter, judge_cost, measure
from bench.scale.exporter import Pair, render, series_shares
from bench.scale.profile import Profile, layer_of, short_frame, summarise
from bench.scale.report import HEADING, RunInfo, edge_uncertainty, replace_section, targets, write_report
from bench.scale.run import Measurement, from_json, to_json

from robustness_gate.series import CountSeries, HistogramSeries

# /proc/<pid>/stat of a process whose name has a space and a parenthesis: utime 250, stime 50 ticks.
STAT = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 503 0 100 1000000 5000 " + " 0" * 30


def test_cpu_seconds_reads_utime_and_stime_after_the_command_name() -> None:
    assert measure.cpu_seconds(STAT, ticks_per_second=100) == 3.0
    assert measure.cpu_seconds(STAT, ticks_per_second=50) == 6.0


def test_status_value_in_kib() -> None:
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n"
    assert measure.status_kib(status, "VmHWM") == 204800 and measure.status_kib(status, "VmRSS") == 102400
    with pytest.raises(ValueError, match="no VmSwap"):
        measure.status_kib(status, "VmSwap")


EXPOSITION = """# HELP robustness_gate_analysis_step_seconds Duration of one analysis step.
# TYPE robustness_gate_analysis_step_seconds histogram
robustness_gate_analysis_step_seconds_bucket{le="0.1"} 50.0
robustness_gate_analysis_step_seconds_bucket{le="0.5"} 90.0
robustness_gate_analysis_step_seconds_bucket{le="1.0"} 99.0
robustness_gate_analysis_step_seconds_bucket{le="+Inf"} 100.0
robustness_gate_analysis_step_seconds_count 100.0
robustness_gate_analysis_step_seconds_sum 31.5
robustness_gate_api_requests_total{kind="Deployment",verb="get"} 20.0
robustness_gate_api_requests_total{kind="RobustnessGate",verb="patch"} 10.0
robustness_gate_prometheus_queries_total 30.0
weird{path="a \\"quoted\\" b"} 1.5e3 1700000000000
"""


def test_exposition_samples_and_totals() -> None:
    samples = measure.parse_exposition(EXPOSITION)
    assert measure.total(samples, "robustness_gate_api_requests_total") == 30
    assert measure.total(samples, "robustness_gate_api_requests_total", verb="get") == 20
    assert measure.by_label(samples, "robustness_gate_api_requests_total", "kind") == {
        "Deployment": 20,
        "RobustnessGate": 10,
    }
    weird = next(s for s in samples if s.name == "weird")
    assert weird.value == 1500 and weird.labels == {"path": 'a "quoted" b'}
    with pytest.raises(ValueError, match="unreadable"):
        measure.parse_exposition("not a sample line at all")


def test_histogram_quantiles_as_histogram_quantile_computes_them() -> None:
    cumulative = measure.buckets(measure.parse_exposition(EXPOSITION), "robustness_gate_analysis_step_seconds")
    assert cumulative == [(0.1, 50), (0.5, 90), (1.0, 99), (math.inf, 100)]
    assert measure.quantile(0.5, cumulative) == pytest.approx(0.1)
    assert measure.quantile(0.7, cumulative) == pytest.approx(0.1 + 0.4 * 20 / 40)
    assert measure.quantile(0.99, cumulative) == pytest.approx(1.0)
    assert measure.quantile(0.995, cumulative) == 1.0  # in the +Inf bucket: the highest finite bound
    assert measure.share_at_most(1.0, cumulative) == 0.99
    assert math.isnan(measure.quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))


def test_window_difference_excludes_the_warm_up() -> None:
    before = [(0.1, 40.0), (1.0, 40.0), (math.inf, 40.0)]  # 40 fast steps during the warm-up
    after = [(0.1, 50.0), (1.0, 140.0), (math.inf, 140.0)]
    window = measure.difference(after, before)
    assert window == [(0.1, 10.0), (1.0, 100.0), (math.inf, 100.0)]
    assert measure.quantile(0.5, window) == pytest.approx(0.1 + 0.9 * 40 / 90)


def test_exporter_series_grow_with_requests_and_keep_histograms_cumulative() -> None:
    pairs = [Pair("g0", "aaa", "bbb"), Pair("g1", "ccc", "ddd")]
    text = render(series_shares(pairs), 1000.0)
    samples = measure.parse_exposition(text)
    assert measure.total(samples, "http_requests_total", app="g0", pod_template_hash="aaa") == pytest.approx(1000)
    assert measure.total(samples, "http_requests_total", code="500", pod_template_hash="ddd") == pytest.approx(10)
    for name in ("http_request_duration_seconds", "model_prediction_score"):
        for value in ("aaa", "bbb", "ccc", "ddd"):
            side = [s for s in samples if s.name == f"{name}_bucket" and s.labels["pod_template_hash"] == value]
            counts = [s.value for s in sorted(side, key=lambda s: float(s.labels["le"]))]
            assert counts == sorted(counts) and counts[-1] == pytest.approx(1000)
            assert 0 < counts[0] < counts[-1]  # the buckets are used, not all empty or all full
    assert {s.labels["app"] for s in samples} == {"g0", "g1"}


def test_profile_layers_count_the_innermost_known_layer() -> None:
    assert (
        layer_of(
            [
                "run (threading.py:1)",
                "step (/x/robustness_gate/controller.py:9)",
                "decode (/x/site-packages/kubernetes/client/rest.py:3)",
                "loads (/lib/json/decoder.py:1)",
            ]
        )
        == "Kubernetes client (urllib3, TLS, JSON)"
    )
    assert layer_of(["run (threading.py:1)", "loads (/lib/json/decoder.py:1)"]) == "HTTP, TLS, JSON and sockets"
    assert layer_of(["main (x.py:1)"]) == "other"
    raw = (
        "run (threading.py:1);step (/x/robustness_gate/controller.py:9);"
        "judge (/repo/operator/robustness_gate/judge/counts.py:5) 30\n"
        "run (threading.py:1);get (/x/site-packages/kubernetes/client/rest.py:3) 10\n"
        "garbage line\n"
    )
    profile = summarise(raw)
    assert profile.samples == 40
    assert profile.layers[0] == ("judge and statistics", 0.75)
    assert profile.functions[0] == ("judge (robustness_gate/judge/counts.py:5)", 0.75)
    assert summarise("") == Profile(0, [], [])
    assert short_frame("f (/usr/lib/python3.11/ssl.py:7)") == "f (ssl.py:7)"


def _measurement(gates: int, cpu: float, rss: float, fast_share: float, queries: float, steps: float) -> Measurement:
    slow = steps * (1 - fast_share)
    return Measurement(
        gates=gates,
        window_seconds=100.0,
        cpu_seconds=cpu * 100,
        peak_rss_mib=rss,
        steps=steps,
        step_buckets=[(0.1, steps - slow), (1.0, steps - slow), (math.inf, steps)],
        prometheus_queries=queries * 3 * steps,
        prometheus_query_range_requests=queries * 3 * steps,
        api_requests={"get RobustnessGate": steps, "patch RobustnessGate": steps},
        prometheus_errors=0,
        analysing=gates,
        creation_seconds=10.0,
        mean_looks=12.0,
        profile=Profile(100, [("Kubernetes client (urllib3, TLS, JSON)", 0.6), ("other", 0.4)], []),
    )


def test_targets_are_judged_from_the_numbers() -> None:
    good = [_measurement(10, 0.05, 150, 1.0, 1.0, 100), _measurement(500, 0.8, 250, 0.995, 1.0, 4900)]
    lines = targets(good)
    assert "gates on one core (≤ 1 core, keeping up): MET" in lines[0] and "0.80 cores" in lines[0]
    assert "MET" in lines[1] and "MET" in lines[2] and "MET" in lines[3]

    bad = [_measurement(500, 1.3, 320, 0.9, 1.5, 4000)]
    lines = targets(bad)
    assert "MISSED" in lines[0] and "CPU 30.0% over one core" in lines[0]
    assert "only 80.0% of the due steps taken" in lines[0]
    assert "of CPU per step, 500 gates would need 1.62 cores, 1.62× the target" in lines[0]
    assert "Kubernetes client" in lines[0]  # what dominates, from the profile
    assert "Peak RSS ≤ 300 MiB: MISSED" in lines[1] and "320 MiB" in lines[1]
    assert "Step p99 ≤ 1 s: MISSED" in lines[2] and "90.0% of steps ≤ 1 s" in lines[2]
    assert "query per metric per step: MISSED" in lines[3] and "1.500 (± 1.0%)" in lines[3]

    assert "NOT MEASURED" in targets([_measurement(100, 0.2, 200, 1.0, 1.0, 1000)])[0]
    line = targets([_measurement(100, 0.2, 200, 1.0, 1.0, 1000)], {500: "TimeoutError: no ReplicaSets"})[0]
    assert "NOT MEASURED** (TimeoutError: no ReplicaSets)" in line


INFO = RunInfo("python -m bench.scale --quick", "2026-12-02 20:00 UTC", "2 CPUs", "3.11.7", "0.1 0.2 0.3")


def test_report_replaces_only_its_own_section(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    top = "# Benchmarks\n\n## Detection\n\nnumbers of another benchmark\n\n"
    path.write_text(top + f"{HEADING}\n\nold numbers\n")
    write_report(path, [_measurement(10, 0.05, 150, 1.0, 1.0, 100)], INFO)
    text = path.read_text()
    assert text.startswith(top) and "old numbers" not in text and text.count(HEADING) == 1
    assert "`python -m bench.scale --quick`" in text and "| 10 | 100 s | 0.05 | 50 ms | 150 MiB |" in text
    assert "| 10/10 | 12 |" in text  # gates Analyzing, looks per gate

    fresh = tmp_path / "missing.md"
    write_report(fresh, [_measurement(10, 0.05, 150, 1.0, 1.0, 100)], INFO)
    assert fresh.read_text().startswith(HEADING)

    assert replace_section("# Other\n\ntext\n", "## Operator scale\n\nnew\n") == (
        "# Other\n\ntext\n\n## Operator scale\n\nnew\n"
    )


def test_measurements_survive_a_json_round_trip() -> None:
    results = [_measurement(10, 0.05, 150, 1.0, 1.0, 100), _measurement(500, 1.3, 320, 0.9, 1.5, 4000)]
    again = from_json(to_json(results))
    assert again == results
    assert again[0].step_buckets[-1] == (math.inf, 100) and again[1].profile == results[1].profile


def test_mean_step_time_and_the_uncertainty_of_per_step_ratios() -> None:
    cumulative = [(0.1, 50.0), (1.0, 100.0), (math.inf, 100.0)]
    assert measure.mean(cumulative) == pytest.approx((50 * 0.05 + 50 * 0.55) / 100)
    assert measure.mean([(1.0, 0.0), (math.inf, 4.0)]) == 1.0  # beyond the last bound: at least that
    slow = _measurement(500, 0.3, 300, 0.0, 1.02, 600)  # every step over 1 s: 6 steps/s, ~1 s each
    assert slow.in_flight == pytest.approx(6 * 1.0)
    assert edge_uncertainty(slow) == pytest.approx(0.01)  # 6 of 600 steps, the 1% floor
    very_slow = dataclasses.replace(slow, step_buckets=[(1.0, 0.0), (30.0, 0.0), (math.inf, 600.0)])
    assert edge_uncertainty(very_slow) == pytest.approx(6 * 30 / 600)
    assert "MET" in targets([very_slow])[3]  # 1.02 within ± 30%
    assert "p99 > 30 s" in targets([very_slow])[2]


def test_the_judge_cost_table_shows_the_analysis_age_and_grows_with_the_looks(tmp_path: Path) -> None:
    measured = judge_cost.judge_milliseconds(looks=(10, 360), repeats=3)
    assert [looks for looks, _ in measured] == [10, 360]
    assert measured[1][1] > measured[0][1] > 0  # every look is judged again at every step
    path = tmp_path / "benchmarks.md"
    write_report(path, [_measurement(10, 0.05, 150, 1.0, 1.0, 100)], dataclasses.replace(INFO, judge=measured))
    text = path.read_text()
    assert "| 10 | 2 min |" in text and "| 360 | 60 min |" in text
    assert "judge_cost.py" in text
    assert "judge CPU per step" not in write_and_read(tmp_path / "plain.md")


def write_and_read(path: Path) -> str:
    write_report(path, [_measurement(10, 0.05, 150, 1.0, 1.0, 100)], INFO)
    return path.read_text()


def test_judge_data_has_the_exporters_shape() -> None:
    data = judge_cost.gate_data(5)
    assert sorted(data) == ["error-rate", "latency-p99", "prediction-drift"]
    latency = data["latency-p99"]
    assert isinstance(latency, HistogramSeries) and latency.canary.shape == (5, len(exporter.LATENCY_BUCKETS) + 1)
    errors = data["error-rate"]
    assert isinstance(errors, CountSeries) and float(errors.canary_events.sum()) < float(errors.canary_total.sum())


def test_the_results_show_how_late_steps_started(tmp_path: Path) -> None:
    late = dataclasses.replace(
        _measurement(10, 0.05, 150, 1.0, 1.0, 100), lateness_buckets=[(0.01, 50.0), (0.1, 99.0), (math.inf, 100.0)]
    )
    path = tmp_path / "benchmarks.md"
    write_report(path, [late, _measurement(100, 0.2, 200, 1.0, 1.0, 1000)], INFO)
    rows = [line for line in path.read_text().splitlines() if line.startswith(("| 10 |", "| 100 |"))]
    assert "| 10 ms / 100 ms |" in rows[0]  # half within 10 ms; the 99th of 100 at the 0.1 s bound
    assert "| n/a / n/a |" in rows[1]  # an operator without the histogram
    [restored] = from_json(to_json([late]))
    assert restored.lateness_buckets == late.lateness_buckets


def test_the_results_split_a_steps_cpu_by_part(tmp_path: Path) -> None:
    # 100 steps, 5 CPU seconds in all: 3.3 s inside steps by part, 1.7 s outside them.
    parts = {"read": 0.1, "prometheus": 1.0, "judge": 1.5, "status": 0.5, "other": 0.2}
    split = dataclasses.replace(_measurement(10, 0.05, 150, 1.0, 1.0, 100), step_cpu=parts)
    path = tmp_path / "benchmarks.md"
    write_report(path, [split, _measurement(100, 0.2, 200, 1.0, 1.0, 1000)], INFO)
    rows = {line.split(" | ")[0]: line for line in path.read_text().splitlines() if line.startswith("| ")}
    assert rows["| judge"] == "| judge | 15.0 |"  # only N=10 has the counter: one column
    assert rows["| Prometheus query and answer"].endswith("| 10.0 |")
    assert rows["| outside steps"] == "| outside steps | 17.0 |"
    assert rows["| **all**"] == "| **all** | **50.0** |"
    [restored] = from_json(to_json([split]))
    assert restored.step_cpu == parts


def test_machine_busy_time_leaves_out_idle_and_iowait() -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks
    stat = "cpu  100 10 50 9000 40 5 5 30 20 0\ncpu0 50 5 25 4500 20 2 3 15 10 0\nintr 1 2\n"
    assert measure.machine_busy_seconds(stat, ticks_per_second=100) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="all-CPU line"):
        measure.machine_busy_seconds("cpu0 1 2 3 4 5 6 7\n", ticks_per_second=100)


def test_the_results_show_where_the_machines_cpu_goes(tmp_path: Path) -> None:
    # 100 s window: operator 67 s, Prometheus 40 s, kube-apiserver 30 s, etcd 10 s; the machine 190 s busy.
    spent = {"operator": 67.0, "prometheus": 40.0, "kube-apiserver": 30.0, "etcd": 10.0, "machine": 190.0}
    big = dataclasses.replace(_measurement(500, 0.67, 250, 0.9, 1.0, 3000), machine_cpu=spent, cpus=2)
    lines = targets([big])
    assert "the machine's CPUs were 1.90 cores busy in all (the operator 0.67, Prometheus 0.40, " in lines[0]
    assert "kube-apiserver 0.30, etcd 0.10; table below)" in lines[0]
    # 30 of the 50 steps/s due were taken: at the due rate each process needs 5/3 of its CPU
    assert (
        "At the due rate these would need about 3.17 cores (operator 1.12 + Prometheus 0.67 + kube-apiserver 0.50, "
        "…), more than the machine's 2 CPUs" in lines[0]
    )
    keeping_up = dataclasses.replace(big, steps=5000)
    assert "At the due rate" not in targets([keeping_up])[0]
    path = tmp_path / "benchmarks.md"
    write_report(path, [_measurement(10, 0.05, 150, 1.0, 1.0, 100), big], INFO)
    rows = {line.split(" | ")[0]: line for line in path.read_text().splitlines() if line.startswith("| ")}
    assert rows["| Prometheus"] == "| Prometheus | 0.40 |"  # only N=500 was measured this way: one column
    assert rows["| everything else"] == "| everything else | 0.43 |"
    assert rows["| **whole machine**"] == "| **whole machine** | **1.90** |"
    assert "| kwok" not in rows  # a process not measured gets no row
    [restored] = from_json(to_json([big]))
    assert restored.machine_cpu == spent

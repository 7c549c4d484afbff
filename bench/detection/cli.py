"""Command line: run the benchmark and regenerate the report and the figure."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import matplotlib
import numpy as np
import scipy

from bench.detection.plot import write_plot
from bench.detection.report import RunInfo, write_report
from bench.detection.run import QUICK, Config, run_benchmark
from bench.detection.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.detection", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small run counts (a few minutes)")
    parser.add_argument("--seed", type=int, default=Config.seed)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="worker processes")
    parser.add_argument("--reference-aa-runs", type=int, help="robustness-gate's runs on the reference A/A")
    parser.add_argument("--aa-runs", type=int, help="healthy runs of the other scenarios")
    parser.add_argument("--h1-runs", type=int, help="regressed runs per scenario")
    parser.add_argument("--kayenta-runs", type=int, help="runs of each kind judged by Kayenta")
    parser.add_argument("--slow-aa-runs", type=int, help="healthy runs of the slow scenarios")
    parser.add_argument("--slow-h1-runs", type=int, help="regressed runs of the slow scenarios")
    parser.add_argument("--departure-aa-runs", type=int, help="healthy runs of the scenarios beyond the binomial model")
    parser.add_argument(
        "--departure-h1-runs", type=int, help="regressed runs of those scenarios (but the detection target's)"
    )
    parser.add_argument("--scenario", action="append", choices=[s.id for s in SCENARIOS], help="only these")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "benchmarks-detection.png")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> Config:
    config = QUICK if args.quick else Config()
    overrides = {
        "reference_aa_runs": args.reference_aa_runs,
        "aa_runs": args.aa_runs,
        "h1_runs": args.h1_runs,
        "kayenta_runs": args.kayenta_runs,
        "slow_aa_runs": args.slow_aa_runs,
        "slow_h1_runs": args.slow_h1_runs,
        "departure_aa_runs": args.departure_aa_runs,
        "departure_h1_runs": args.departure_h1_runs,
    }
    changes = {k: v for k, v in overrides.items() if v is not None}
    if args.scenario:
        changes["scenarios"] = tuple(args.scenario)
    return dataclasses.replace(config, seed=args.seed, jobs=max(1, args.jobs), **changes)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    config = config_from(args)
    load_before = os.getloadavg()[0]
    results = run_benchmark(config)
    load_after = os.getloadavg()[0]
    info = RunInfo(
        command=shlex.join(["python", "-m", "bench.detection", *argv]),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{os.cpu_count()} CPUs ({cpu_model()}), {config.jobs} worker processes",
        versions=(
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
            f"matplotlib {matplotlib.__version__}"
        ),
        png_name=args.png.name,
        load=f" (1-min load average {load_before:.1f} at the start, {load_after:.1f} at the end)",
    )
    write_report(results, args.markdown, info)
    write_plot(results, args.png)
    print(f"wrote {args.markdown} and {args.png} in {results.wall_seconds:.0f}s", file=sys.stderr)
    return 0

"""Command line: run the scale benchmark and rewrite the "## Operator scale" section of docs/benchmarks.md."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import sys
from pathlib import Path

from bench.scale.judge_cost import judge_milliseconds
from bench.scale.report import RunInfo, write_report
from bench.scale.run import QUICK, Bench, Config, from_json, to_json

ROOT = Path(__file__).resolve().parents[2]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def memory_gib() -> float:
    for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024 / 1024
    return float("nan")


def gate_counts(text: str) -> tuple[int, ...]:
    counts = tuple(int(part) for part in text.split(",") if part.strip())
    if not counts or any(count <= 0 for count in counts):
        raise argparse.ArgumentTypeError("give positive gate counts, e.g. 10,100,500")
    return counts


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__)
    parser.add_argument("--gates", type=gate_counts, default=Config.gates, help="gate counts (default 10,100,500)")
    parser.add_argument("--quick", action="store_true", help="shorter warm-up, window and profile")
    parser.add_argument("--window", type=float, help="seconds measured per gate count")
    parser.add_argument("--no-profile", action="store_true", help="skip py-spy on the largest gate count")
    parser.add_argument("--workdir", type=Path, default=Config.workdir)
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--results", type=Path, help="also save the measurements as JSON here")
    parser.add_argument("--render", type=Path, metavar="JSON", help="only rewrite the report from saved measurements")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    config = dataclasses.replace(QUICK if args.quick else Config(), gates=args.gates, workdir=args.workdir)
    if args.window is not None:
        config = dataclasses.replace(config, window_seconds=args.window)
    if args.no_profile:
        config = dataclasses.replace(config, profile_seconds=0.0)
    if args.render is not None:
        saved = json.loads(args.render.read_text())
        failures = {int(count): reason for count, reason in saved.get("failures", {}).items()}
        info = RunInfo(**saved["info"])
        info = dataclasses.replace(info, judge=[(int(looks), float(ms)) for looks, ms in info.judge])
        write_report(args.markdown, from_json(json.dumps(saved["results"])), info, failures)
        print(f"wrote {args.markdown}")
        return 0
    load = " ".join(f"{value:.2f}" for value in os.getloadavg())
    started = datetime.datetime.now(datetime.UTC)
    results, failures = Bench(config).run()
    command = list(sys.argv[1:] if argv is None else argv)
    info = RunInfo(
        command="python -m bench.scale" + (" " + shlex.join(command) if command else ""),
        date=started.strftime("%Y-%m-%d %H:%M UTC"),
        machine=f"{os.cpu_count()} CPUs ({cpu_model()}), {memory_gib():.0f} GiB RAM, Linux {platform.release()}",
        python=platform.python_version(),
        load=load,
        judge=judge_milliseconds(),
    )
    if args.results is not None:
        saved = {"info": dataclasses.asdict(info), "results": json.loads(to_json(results)), "failures": failures}
        args.results.write_text(json.dumps(saved))
    write_report(args.markdown, results, info, failures)
    print(f"wrote {args.markdown}")
    return 0

"""docs/benchmarks-detection.png: median time to roll back against the false-rollback rate, per scenario."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from bench.detection.run import BINOMIAL, OURS, Results
from bench.detection.scenarios import HORIZON_SECONDS
from bench.detection.summary import summarise

COLORS = {
    OURS: "#d62728",
    BINOMIAL: "#8c564b",
    "Flagger": "#1f77b4",
    "Argo Rollouts": "#2ca02c",
    "Kayenta": "#9467bd",
}
SIZES = {OURS: 13, BINOMIAL: 10}
MARKERS = {"defaults": "*", "shipped": "o", "once": "s", "tuned": "D"}
NEVER = HORIZON_SECONDS / 60 * 1.08


def write_plot(results: Results, path: Path) -> None:
    count = len(results.scenarios)
    columns = min(4, count)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    for axis, result in zip(axes.flat, results.scenarios, strict=False):
        for cell in result.cells:
            m = summarise(cell.healthy, cell.regressed)
            x = 100 * m.false_rollback.value
            low, high = (100 * v for v in m.false_rollback.ci)
            y = m.detect_median / 60 if math.isfinite(m.detect_median) else NEVER
            axis.errorbar(
                x,
                y,
                xerr=[[x - low], [high - x]],
                fmt=MARKERS[cell.mode],
                color=COLORS[cell.rule],
                markersize=SIZES.get(cell.rule, 7),
                capsize=2,
                alpha=0.9,
            )
        axis.axhline(result.two_sample_floor / 60, color="black", linestyle="--", linewidth=1)
        axis.axhline(result.oracle_floor / 60, color="grey", linestyle=":", linewidth=1)
        axis.axhline(NEVER, color="lightgrey", linewidth=0.8)
        axis.axvline(100 * results.config.target_fpr, color="orange", linestyle="-.", linewidth=1)
        axis.set_xscale("symlog", linthresh=1.0)
        axis.set_xlim(-0.1, 100)
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.set_ylim(0, NEVER * 1.05)
        axis.set_title(textwrap.fill(result.scenario.title, 60), fontsize=8)
        axis.set_xlabel("false rollbacks of healthy canaries (%)")
        axis.set_ylabel("median time to roll back (min)")
    for axis in list(axes.flat)[count:]:
        axis.axis("off")
    handles = (
        [Line2D([], [], color=color, marker="o", linestyle="", label=rule) for rule, color in COLORS.items()]
        + [Line2D([], [], color="black", marker=marker, linestyle="", label=mode) for mode, marker in MARKERS.items()]
        + [
            Line2D([], [], color="black", linestyle="--", label="two-sample floor"),
            Line2D([], [], color="grey", linestyle=":", label="oracle floor"),
            Line2D([], [], color="orange", linestyle="-.", label="1% false rollbacks"),
        ]
    )
    figure.legend(handles=handles, loc="lower center", ncol=6, fontsize=8, frameon=False)
    figure.suptitle(
        f"Time to roll back vs false rollbacks (top line: not rolled back within {HORIZON_SECONDS // 60} min)"
    )
    height = 4.2 * rows
    figure.tight_layout(rect=(0, 0.8 / height, 1, 1 - 0.4 / height))  # room for the legend and the title
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)

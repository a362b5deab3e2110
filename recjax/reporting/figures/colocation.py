"""Co-location: per-instance p50 slowdown and aggregate throughput against the instance count N,
one line per preset (benchmarks.colocation runs): the latency cost of the throughput gain.

    figure = draw([load_run("runs/colocation/rmc2-rows0.5-...")])

Left panel: each instance's p50 over the N=1 instance's p50 (points), and their mean per N
(line); 1 means no slowdown. Right panel: the aggregate throughput (samples/s, summed over the
instances) per N, and the ideal N x the N=1 throughput (dashed); an N whose instances shared
cores (oversubscribed) gets a hollow ring.

Artists, by gid: "<preset>/slowdown" (mean slowdown per N), "<preset>/instances" (every
instance's slowdown), "<preset>/throughput", "<preset>/ideal", "<preset>/oversubscribed".
A run without an N=1 measurement has no slowdowns (its results hold null): its left panel line
is left out.
"""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from recjax.reporting.figures import canvas
from recjax.reporting.figures.results import RunResults, panel_titles

BENCHMARK = "colocation"
TITLE = "Co-location: slowdown and throughput against instance count"


def series(run: RunResults) -> dict[str, np.ndarray]:
    """Per N in increasing order: "instances", "throughput", "slowdown" (mean over instances,
    NaN without an N=1 run), "oversubscribed"; and "instance_n", "instance_slowdown" (flat)."""
    rows = []
    instance_n, instance_slowdown = [], []
    for index in range(run.length("results")):
        n = int(run.number("results", index, "instances"))
        ratios = []
        for instance in range(run.length("results", index, "per_instance")):
            path = ("results", index, "per_instance", instance, "slowdown_p50")
            if run.get(*path) is not None:
                ratios.append(run.number(*path))
        instance_n += [n] * len(ratios)
        instance_slowdown += ratios
        rows.append(
            (
                n,
                run.number("results", index, "aggregate_throughput_samples_per_s"),
                float(np.mean(ratios)) if ratios else float("nan"),
                float(bool(run.get("results", index, "oversubscribed"))),
            )
        )
    names = ("instances", "throughput", "slowdown", "oversubscribed")
    columns = np.asarray(sorted(rows), dtype=np.float64).reshape(-1, len(names)).T
    return {
        **dict(zip(names, columns, strict=True)),
        "instance_n": np.asarray(instance_n, np.float64),
        "instance_slowdown": np.asarray(instance_slowdown, np.float64),
    }


def draw(runs: Sequence[RunResults]) -> Figure:
    """Two panels, one line per run; raises ResultsError naming a file that is not a colocation
    run or lacks a field."""
    for run in runs:
        run.require(BENCHMARK)
    data = [series(run) for run in runs]
    labels = panel_titles(runs)
    colors = canvas.color_map(labels)
    figure, axes = canvas.new_figure(1, 2)
    slowdown_panel, throughput_panel = axes[0]
    for label, curve in zip(labels, data, strict=True):
        color, n = colors[label], curve["instances"]
        shared = curve["oversubscribed"] > 0
        if np.isfinite(curve["slowdown"]).any():
            slowdown_panel.plot(
                n, curve["slowdown"], color=color, marker="o", label=label, gid=f"{label}/slowdown"
            )
            slowdown_panel.plot(
                curve["instance_n"],
                curve["instance_slowdown"],
                color=color,
                linestyle="none",
                marker=".",
                alpha=0.5,
                gid=f"{label}/instances",
            )
        throughput_panel.plot(
            n, curve["throughput"], color=color, marker="o", label=label, gid=f"{label}/throughput"
        )
        single = curve["throughput"][n == 1]
        if single.size:
            throughput_panel.plot(
                n,
                n * single[0],
                color=color,
                linestyle="--",
                linewidth=0.8,
                label="N x the N=1 throughput",
                gid=f"{label}/ideal",
            )
        if shared.any():
            throughput_panel.plot(
                n[shared],
                curve["throughput"][shared],
                color=color,
                linestyle="none",
                marker="o",
                markersize=9,
                markerfacecolor="none",
                label="cores shared",
                gid=f"{label}/oversubscribed",
            )
    counts = sorted({int(n) for curve in data for n in curve["instances"]})
    slowdown_panel.axhline(1.0, color="0.5", linewidth=0.8)
    slowdown_panel.set_ylabel("p50 slowdown (x the N=1 p50)")
    slowdown_panel.set_title("per-instance p50 slowdown")
    throughput_panel.set_ylabel("aggregate throughput (samples/s)")
    throughput_panel.set_title("aggregate throughput")
    for panel in axes[0]:
        panel.set_xticks(counts)
        panel.set_xlabel("instances N")
        panel.grid(True, alpha=0.3)
        canvas.legend(panel)
    throughput_panel.set_ylim(bottom=0)
    return canvas.finish(figure, TITLE, runs)

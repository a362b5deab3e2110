"""Tail latency against offered load (the hockey stick): p95 and p99 against the offered rate, one
line per sub-batch size, the latency target and the best rate marked (benchmarks.loadgen runs).

    figure = draw([load_run("runs/loadgen/rmc3-...")])

One row of two panels (p95, p99) per run. x is the offered rate each run asked for (`qps`, the
Poisson mean the search moves; the realized rate is `offered_qps` in results.json), y the latency
percentile over all the run's requests (log scale).

Artists, by gid: "<sub_batch>/p95" and "<sub_batch>/p99" (lines, in rate order),
"<sub_batch>/unfinished" (hollow markers on runs that left requests unfinished: their latency is
a lower bound), with a target (--target_p95_ms or --target_p99_ms) "target" (a horizontal line on
its percentile's panel), "<sub_batch>/best" (a star at each sub-batch size's best rate) and "best"
(a vertical line at the best configuration's rate).
"""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from recjax.reporting.figures import canvas
from recjax.reporting.figures.results import RunResults, panel_titles

BENCHMARK = "loadgen"
PERCENTILES = ("p95", "p99")
TITLE = "Tail latency against offered load"


def curves(run: RunResults) -> dict[int, dict[str, np.ndarray]]:
    """{sub_batch: {"qps", "p95", "p99", "unfinished": arrays in rate order}}."""
    points: dict[int, list[tuple[float, float, float, float]]] = {}
    for index in range(run.length("runs")):
        sub_batch = int(run.number("runs", index, "sub_batch"))
        points.setdefault(sub_batch, []).append(
            (
                run.number("runs", index, "qps"),
                run.number("runs", index, "latency_p95_ms"),
                run.number("runs", index, "latency_p99_ms"),
                run.number("runs", index, "unfinished"),
            )
        )
    return {
        sub_batch: dict(
            zip(("qps", "p95", "p99", "unfinished"), np.asarray(sorted(rows)).T, strict=True)
        )
        for sub_batch, rows in points.items()
    }


def draw(runs: Sequence[RunResults]) -> Figure:
    """One row (p95, p99) per run; raises ResultsError naming a file that is not a loadgen run or
    lacks a field."""
    for run in runs:
        run.require(BENCHMARK)
    data = [curves(run) for run in runs]
    colors = canvas.color_map([str(sub_batch) for series in data for sub_batch in series])
    figure, axes = canvas.new_figure(len(runs), len(PERCENTILES))
    for row, run, series, title in zip(axes, runs, data, panel_titles(runs), strict=True):
        for panel, percentile in zip(row, PERCENTILES, strict=True):
            for sub_batch, curve in series.items():
                color = colors[str(sub_batch)]
                finite = np.isfinite(curve[percentile])
                x, y = curve["qps"][finite], curve[percentile][finite]
                panel.plot(
                    x,
                    y,
                    color=color,
                    marker="o",
                    markersize=3,
                    label=f"sub_batch {sub_batch}",
                    gid=f"{sub_batch}/{percentile}",
                )
                unfinished = curve["unfinished"][finite] > 0
                if unfinished.any():
                    panel.plot(
                        x[unfinished],
                        y[unfinished],
                        linestyle="none",
                        marker="o",
                        markersize=8,
                        markerfacecolor="none",
                        color="red",
                        gid=f"{sub_batch}/unfinished",
                    )
            _draw_target(panel, run, percentile, series, colors)
            canvas.log_y_axis(panel)
            panel.set_xlabel("offered load (queries/s)")
            panel.set_ylabel(f"{percentile} latency (ms)")
            panel.set_title(f"{title}: {percentile}")
            panel.grid(True, which="major", alpha=0.3)
            canvas.legend(panel)
    return canvas.finish(figure, TITLE, runs)


def _draw_target(
    panel,
    run: RunResults,
    percentile: str,
    series: dict[int, dict[str, np.ndarray]],
    colors: dict[str, str],
) -> None:
    """The target line (on its percentile's panel), each sub-batch size's best rate, the best."""
    target_percentile = run.get("settings", "target_percentile")
    if target_percentile is None:
        return
    target_ms = run.number("settings", "target_ms")
    if percentile == target_percentile:
        panel.axhline(
            target_ms,
            color="0.3",
            linestyle=":",
            linewidth=1,
            label=f"target {percentile} <= {target_ms:g} ms",
            gid="target",
        )
    for sub_batch, curve in series.items():
        best_qps = run.get("searches", str(sub_batch), "best_qps")
        if best_qps is None:
            continue
        at = np.flatnonzero(curve["qps"] == best_qps)
        if at.size:
            panel.plot(
                best_qps,
                curve[percentile][at[-1]],
                color=colors[str(sub_batch)],
                marker="*",
                markersize=12,
                gid=f"{sub_batch}/best",
            )
    best = run.get("best")
    if best is not None:
        panel.axvline(
            run.number("best", "qps"),
            color=colors.get(str(int(run.number("best", "sub_batch"))), "0.3"),
            linestyle="--",
            linewidth=0.8,
            label=f"best: sub_batch {best['sub_batch']}, {best['qps']:g} qps",
            gid="best",
        )

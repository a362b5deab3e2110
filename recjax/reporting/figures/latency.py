"""Latency against batch size: p50 as a line and p50-p99 as a band, one line per mode, one panel
per preset (benchmarks.latency runs), on log-log axes.

    figure = draw([load_run("runs/latency/rmc1-..."), load_run("runs/latency/rmc2-...")])

Artists, by gid: "<mode>/p50" and "<mode>/p99" (lines: x batch sizes, y ms), "<mode>/band" (the
band between them); with a p99 target (--p99_target_ms), "p99_target" (a horizontal line) and
"<mode>/best" (a marker at the best batch size's p99).
"""

from collections.abc import Sequence

from matplotlib.figure import Figure

from recjax.reporting.figures import canvas
from recjax.reporting.figures.results import RunResults, panel_titles

BENCHMARK = "latency"
TITLE = "Latency per batch size: p50 (line), p50 to p99 (band)"


def _series(run: RunResults) -> dict[str, dict[str, list[float]]]:
    """{mode: {"batch_size", "p50_ms", "p99_ms": values by batch size}}, modes in run order."""
    series: dict[str, dict[str, list[float]]] = {}
    for index in range(run.length("results")):
        mode = run.get("results", index, "mode")
        row = series.setdefault(mode, {"batch_size": [], "p50_ms": [], "p99_ms": []})
        for field in row:
            row[field].append(run.number("results", index, field))
    for mode, row in series.items():
        order = sorted(range(len(row["batch_size"])), key=row["batch_size"].__getitem__)
        series[mode] = {field: [values[i] for i in order] for field, values in row.items()}
    return series


def draw(runs: Sequence[RunResults]) -> Figure:
    """One panel per run (preset); raises ResultsError naming a file that is not a latency run or
    lacks a field."""
    for run in runs:
        run.require(BENCHMARK)
    data = [_series(run) for run in runs]
    colors = canvas.color_map([mode for series in data for mode in series])
    figure, axes = canvas.new_figure(1, len(runs))
    for panel, run, series, title in zip(axes[0], runs, data, panel_titles(runs), strict=True):
        for mode, row in series.items():
            x, p50, p99 = row["batch_size"], row["p50_ms"], row["p99_ms"]
            color = colors[mode]
            panel.fill_between(x, p50, p99, color=color, alpha=0.2, linewidth=0, gid=f"{mode}/band")
            panel.plot(x, p99, color=color, linewidth=0.6, alpha=0.7, gid=f"{mode}/p99")
            panel.plot(x, p50, color=color, marker="o", markersize=3, label=mode, gid=f"{mode}/p50")
        _draw_target(panel, run, colors)
        canvas.batch_size_axis(panel, [b for row in series.values() for b in row["batch_size"]])
        canvas.log_y_axis(panel)
        panel.set_ylabel("latency (ms)")
        panel.set_title(title)
        panel.grid(True, which="major", alpha=0.3)
    canvas.figure_legend(figure, axes[0])
    return canvas.finish(figure, TITLE, runs)


def _draw_target(panel, run: RunResults, colors: dict[str, str]) -> None:
    """The p99 target and, per mode, the best batch size under it (runs with --p99_target_ms)."""
    bound = run.data.get("latency_bound")
    if not bound:
        return
    target = run.number("latency_bound", "p99_target_ms")
    panel.axhline(target, color="0.3", linestyle=":", linewidth=1, gid="p99_target")
    panel.annotate(
        f"p99 target {target:g} ms (star: best batch size under it)",
        (0.02, target),
        xycoords=("axes fraction", "data"),
        fontsize="x-small",
        va="bottom",
    )
    for mode, best in run.get("latency_bound", "best").items():
        if best is None or mode not in colors:
            continue
        panel.plot(
            run.number("latency_bound", "best", mode, "batch_size"),
            run.number("latency_bound", "best", mode, "p99_ms"),
            color=colors[mode],
            marker="*",
            markersize=11,
            gid=f"{mode}/best",
        )

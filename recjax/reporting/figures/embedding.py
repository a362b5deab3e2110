"""Embedding-bag bandwidth against batch size beside the machine's gather ceiling, one line per
implementation (lowering, or torch), one panel per preset (benchmarks.embedding runs).

    figure = draw([load_run("runs/embedding/rmc2-...")])

y is the bytes of rows gathered per second (GB/s, at every feature's full capacity), log-log
axes; the ceiling is the random-row gather bandwidth the same run measured on the model's largest
table group (its median), a horizontal line.

Artists, by gid: "<implementation>" (lines: x batch sizes, y GB/s), "ceiling".
"""

from collections.abc import Sequence

from matplotlib.figure import Figure

from recjax.reporting.figures import canvas
from recjax.reporting.figures.results import RunResults, panel_titles

BENCHMARK = "embedding"
TITLE = "Embedding bags: bandwidth against the gather ceiling"


def bandwidths(run: RunResults) -> dict[str, tuple[list[int], list[float]]]:
    """{implementation: (batch sizes, GB/s)} in batch-size order, implementations in run order."""
    points: dict[str, list[tuple[int, float]]] = {}
    for index in range(run.length("results")):
        points.setdefault(run.get("results", index, "implementation"), []).append(
            (
                int(run.number("results", index, "batch_size")),
                run.number("results", index, "gigabytes_per_s"),
            )
        )
    return {
        name: ([b for b, _ in sorted(rows)], [g for _, g in sorted(rows)])
        for name, rows in points.items()
    }


def draw(runs: Sequence[RunResults]) -> Figure:
    """One panel per run (preset); raises ResultsError naming a file that is not an embedding run
    or lacks a field."""
    for run in runs:
        run.require(BENCHMARK)
    data = [bandwidths(run) for run in runs]
    colors = canvas.color_map([name for lines in data for name in lines])
    figure, axes = canvas.new_figure(1, len(runs))
    for panel, run, lines, title in zip(axes[0], runs, data, panel_titles(runs), strict=True):
        ceiling = run.number("ceiling", "median")
        panel.axhline(
            ceiling,
            color="0.2",
            linestyle="--",
            linewidth=1,
            label="gather ceiling",
            gid="ceiling",
        )
        panel.annotate(
            f"ceiling {ceiling:.3g} GB/s",
            (0.02, ceiling),
            xycoords=("axes fraction", "data"),
            fontsize="x-small",
            va="bottom",
        )
        for name, (batch_sizes, gigabytes_per_s) in lines.items():
            panel.plot(
                batch_sizes,
                gigabytes_per_s,
                color=colors[name],
                marker="o",
                markersize=3,
                label=name,
                gid=name,
            )
        canvas.batch_size_axis(panel, [b for sizes, _ in lines.values() for b in sizes])
        canvas.log_y_axis(panel)
        panel.set_ylabel("rows gathered (GB/s)")
        panel.set_title(title)
        panel.grid(True, which="major", alpha=0.3)
    canvas.figure_legend(figure, axes[0])
    return canvas.finish(figure, TITLE, runs)

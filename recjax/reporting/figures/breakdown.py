"""The operator breakdown: each stage's share of the time as stacked bars per batch size, presets
side by side (benchmarks.breakdown runs): the paper's figure, RMC2 embedding-bound, RMC3 FC-bound.

    figure = draw([load_run("runs/breakdown/rmc1-..."), load_run("runs/breakdown/rmc2-...")])

A bar stacks each stage's median time over the sum of the stages' median times (percent; the
paper's "share of operators", and `fc_share_of_stages` for the "fc" stages), in the model's stage
order, so every bar sums to 100 %. The end-to-end p50 is written under each bar; the rest (end to
end minus the sum of the stages, which can be negative) is in results.json and the binary's table,
not in the bars.

Artists: one bar container per stage and panel, labelled with the stage's name
(`axes.containers`), one bar per batch size, in the run's batch-size order.
"""

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from recjax.reporting.figures import canvas
from recjax.reporting.figures.results import RunResults, panel_titles

BENCHMARK = "breakdown"
TITLE = "Operator breakdown: share of the stages' time"


def stage_percentages(run: RunResults) -> tuple[list[int], list[float], dict[str, list[float]]]:
    """(batch sizes, end-to-end ms, {stage: percent of the stage sum per batch size})."""
    rows = range(run.length("results"))
    batch_sizes = [int(run.number("results", i, "batch_size")) for i in rows]
    end_to_end = [run.number("results", i, "end_to_end_ms") for i in rows]
    stages = dict.fromkeys(stage for i in rows for stage in run.get("results", i, "stage_kinds"))
    percent: dict[str, list[float]] = {stage: [] for stage in stages}
    for i in rows:
        stage_ms = {
            stage: run.number("results", i, "stage_ms", stage)
            for stage in run.get("results", i, "stage_kinds")
        }
        total = sum(stage_ms.values())
        for stage in stages:
            percent[stage].append(100 * stage_ms.get(stage, 0.0) / total)
    return batch_sizes, end_to_end, percent


def draw(runs: Sequence[RunResults]) -> Figure:
    """One panel per run (preset), sharing the 0-100 % axis; raises ResultsError naming a file
    that is not a breakdown run or lacks a field."""
    for run in runs:
        run.require(BENCHMARK)
    data = [stage_percentages(run) for run in runs]
    colors = canvas.color_map([stage for _, _, percent in data for stage in percent])
    figure, axes = canvas.new_figure(1, len(runs), sharey=True)
    for panel, (batch_sizes, end_to_end, percent), title in zip(
        axes[0], data, panel_titles(runs), strict=True
    ):
        x = np.arange(len(batch_sizes))
        bottom = np.zeros(len(batch_sizes))
        for stage, heights in percent.items():
            panel.bar(x, heights, 0.7, bottom=bottom, color=colors[stage], label=stage)
            bottom += heights
        panel.set_xticks(
            x, [f"{b}\n{ms:.3g} ms" for b, ms in zip(batch_sizes, end_to_end, strict=True)]
        )
        panel.tick_params(axis="x", labelsize="small")
        panel.set_xlabel("batch size (end-to-end p50)")
        panel.set_ylim(0, 100)
        panel.set_title(title)
        panel.grid(True, axis="y", alpha=0.3)
    axes[0, 0].set_ylabel("share of the stages' time (%)")
    canvas.figure_legend(figure, axes[0])
    return canvas.finish(figure, TITLE, runs)

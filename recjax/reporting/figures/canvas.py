"""What every figure shares: a display-free matplotlib figure, its panels, colors and footer.

Figures are `matplotlib.figure.Figure` objects with an Agg canvas attached: pyplot is never
imported, so no display or GUI backend is ever selected, in a binary, a test or a headless machine.
Every artist that carries data gets a gid (`line.get_gid()`), e.g. "jit/p50", so tests and readers
find it by name rather than by drawing order.
"""

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, NullFormatter, ScalarFormatter

from recjax.reporting.figures.results import RunResults

PANEL_WIDTH_IN = 4.4
PANEL_HEIGHT_IN = 3.3
# matplotlib's default qualitative palette (tab10), by index: lines and bars keep one color per
# name (mode, stage, sub-batch size, preset) across the panels of a figure.
COLORS = tuple(f"C{index}" for index in range(10))


def new_figure(rows: int, columns: int, *, sharey: bool = False) -> tuple[Figure, np.ndarray]:
    """A figure of rows x columns panels (an [rows, columns] array of Axes), Agg canvas."""
    figure = Figure(
        figsize=(PANEL_WIDTH_IN * columns, PANEL_HEIGHT_IN * rows + 0.6), layout="constrained"
    )
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, columns, squeeze=False, sharey=sharey)
    return figure, axes


def color_map(names: Sequence[str]) -> dict[str, str]:
    """One color per distinct name, in order of first appearance."""
    return {name: COLORS[index % len(COLORS)] for index, name in enumerate(dict.fromkeys(names))}


def batch_size_axis(axes: Axes, batch_sizes: Sequence[int]) -> None:
    """A log2 x axis with a plain tick at each batch size."""
    axes.set_xscale("log", base=2)
    axes.set_xticks(sorted(set(batch_sizes)))
    axes.xaxis.set_major_formatter(ScalarFormatter())
    axes.xaxis.set_minor_formatter(NullFormatter())
    axes.set_xlabel("batch size")


class PlainLogFormatter(LogFormatter):
    """LogFormatter's choice of ticks to label (minor ones too on a short range), written as plain
    numbers (0.3, 20, 1000) rather than 3x10^-1."""

    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def log_y_axis(axes: Axes) -> None:
    """A log10 y axis labelled with plain numbers."""
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(PlainLogFormatter())
    axes.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))


def _legend_entries(axes: Sequence[Axes]) -> dict[str, object]:
    """{label: handle}, each label once, in drawing order."""
    entries: dict[str, object] = {}
    for panel in axes:
        for handle, label in zip(*panel.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    return entries


def legend(axes: Axes) -> None:
    """The panel's legend, each label once (none if nothing is labelled)."""
    entries = _legend_entries([axes])
    if entries:
        axes.legend(list(entries.values()), list(entries), fontsize="small")


def figure_legend(figure: Figure, axes: Sequence[Axes]) -> None:
    """One legend for all panels (each label once), outside the panels on the right."""
    entries = _legend_entries(axes)
    if entries:
        figure.legend(
            list(entries.values()), list(entries), loc="outside right center", fontsize="small"
        )


def machine_line(run: RunResults) -> str | None:
    """A short stamp of the machine a run measured (CPU, usable cores, jax), if it has one."""
    fingerprint = run.data.get("fingerprint")
    if not isinstance(fingerprint, dict) or "cpu_model" not in fingerprint:
        return None
    return (
        f"{fingerprint['cpu_model']}, {fingerprint.get('usable_cpus', '?')} usable cores; "
        f"jax {fingerprint.get('jax', '?')}"
    )


def finish(figure: Figure, title: str, runs: Sequence[RunResults]) -> Figure:
    """The figure's title, and a footer naming the machine(s) of its runs."""
    # About 9 characters of the title's font per inch of figure width.
    figure.suptitle(textwrap.fill(title, width=max(30, int(9 * figure.get_figwidth()))))
    machines = [line for line in dict.fromkeys(machine_line(run) for run in runs) if line]
    if machines:
        figure.supxlabel("machine: " + " | ".join(machines), fontsize="x-small", color="0.4")
    return figure

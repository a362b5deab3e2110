"""The paper's figures, drawn from the results.json files of recjax runs (needs the `plot` extra).

    from recjax.reporting import figures

    runs = figures.find_runs(["runs/latency", "runs/breakdown"])  # every run below these folders
    written = figures.write_figures(runs, out="docs/results/figures")
    written.files        # [".../latency.png", ".../latency.svg", ".../breakdown.png", ...]

    figures.write_run_figures(logdir)   # what a binary does at the end of its own run

One module per figure kind, each drawing runs of one benchmark (`results["benchmark"]`): it
defines BENCHMARK and `draw(runs) -> matplotlib Figure`. `KINDS` maps a benchmark to its module
(imported when first needed, so this package imports without matplotlib). To add a figure (say,
for a `train` benchmark), write `recjax/reporting/figures/train.py` and add one line to KINDS.

Runs of one benchmark share one figure (a panel, row or line per run). Its PNG and SVG go into
`out`, or else into the deepest folder holding all those runs (a single run's own folder); each
run also gets its own figure (drawn from it alone) as a TensorBoard image `figures/<benchmark>`
in its event files (see `output.write_image_summaries`).
"""

import dataclasses
import importlib
import os
from collections.abc import Sequence
from types import ModuleType

from recjax.reporting.figures.results import ResultsError as ResultsError
from recjax.reporting.figures.results import RunResults as RunResults
from recjax.reporting.figures.results import find_runs as find_runs
from recjax.reporting.figures.results import load_run as load_run

# results["benchmark"] -> the module drawing its figure; figures are drawn in this order.
KINDS = {
    "latency": "recjax.reporting.figures.latency",
    "breakdown": "recjax.reporting.figures.breakdown",
    "loadgen": "recjax.reporting.figures.loadgen",
    "colocation": "recjax.reporting.figures.colocation",
    "embedding": "recjax.reporting.figures.embedding",
}
INSTALL_HINT = "pip install -e '.[plot]' (or pip install matplotlib)"


class NoCommonFolderError(ValueError):
    """Runs that share no folder but the root, and no output folder named for their figure."""


def plotting_missing() -> str | None:
    """None when matplotlib imports; else what is missing and how to install it."""
    try:
        import matplotlib  # noqa: F401  (the optional `plot` extra)
    except ImportError as error:
        return f"figures need matplotlib, which is not installed ({error}); {INSTALL_HINT}"
    return None


def kind_module(benchmark: str) -> ModuleType:
    """The module drawing `benchmark`'s figure; ValueError naming the kinds there are."""
    if benchmark not in KINDS:
        raise ValueError(f"No figure for benchmark {benchmark!r}; figures exist for {list(KINDS)}.")
    return importlib.import_module(KINDS[benchmark])


@dataclasses.dataclass
class Written:
    """What `write_figures` wrote.

    Attributes:
      files: the PNG and SVG files, two per figure.
      event_files: each run's `*.figures` event file holding its TensorBoard image.
      skipped: runs of benchmarks that have no figure (e.g. benchmarks.machine).
    """

    files: list[str] = dataclasses.field(default_factory=list)
    event_files: list[str] = dataclasses.field(default_factory=list)
    skipped: list[RunResults] = dataclasses.field(default_factory=list)


def group_by_kind(
    runs: Sequence[RunResults],
) -> tuple[dict[str, list[RunResults]], list[RunResults]]:
    """({benchmark: its runs} in KINDS order, the runs of benchmarks without a figure)."""
    groups = {benchmark: [run for run in runs if run.benchmark == benchmark] for benchmark in KINDS}
    skipped = [run for run in runs if run.benchmark not in KINDS]
    return {benchmark: group for benchmark, group in groups.items() if group}, skipped


def common_folder(runs: Sequence[RunResults]) -> str:
    """The deepest folder holding every run (a single run's own folder)."""
    folder = os.path.commonpath([run.logdir for run in runs])
    if os.path.dirname(folder) == folder:
        raise NoCommonFolderError(
            f"The runs {[run.logdir for run in runs]} share no folder but the root {folder!r}; "
            "name an output folder for their figures."
        )
    return folder


def write_figures(
    runs: Sequence[RunResults], out: str | None = None, tensorboard: bool = True
) -> Written:
    """Draws one figure per benchmark present in `runs`, writes it as PNG and SVG (into `out`, or
    beside the runs), and, with `tensorboard`, each run's own figure into its event files.

    Raises ResultsError naming a results file that lacks a field its figure needs, and
    NoCommonFolderError when `out` is None and a figure's runs share no folder but the root.
    """
    from recjax.reporting.figures import output  # matplotlib: imported only when drawing

    groups, skipped = group_by_kind(runs)
    written = Written(skipped=skipped)
    for benchmark, group in groups.items():
        module = kind_module(benchmark)
        figure = module.draw(group)
        folder = out if out is not None else common_folder(group)
        written.files += output.save(figure, folder, benchmark)
        if not tensorboard:
            continue
        for run in group:
            own = figure if len(group) == 1 else module.draw([run])
            images = {benchmark: output.png_bytes(own)}
            written.event_files.append(output.write_image_summaries(run.logdir, images))
    return written


def write_run_figures(logdir: str) -> Written:
    """A run's own figure, beside it: <logdir>/<benchmark>.png and .svg, and a TensorBoard image
    in its event files (nothing for a benchmark without a figure)."""
    return write_figures([load_run(logdir)])

r"""The paper's figures, drawn from the results.json files of earlier runs (needs the plot extra).

    python -m benchmarks.figures --runs=runs/latency
    python -m benchmarks.figures --runs=runs/latency,runs/breakdown,runs/loadgen \
        --out=docs/results/figures

--runs names run folders, folders of runs (searched at every depth for results.json) or
results.json files. Runs of one benchmark share one figure, written as <benchmark>.png and .svg
into --out, or else into the deepest folder holding all of them (a single run's own folder):

    latency      p50 (line) and p99 (band) against batch size, log-log; a line per mode, a panel
                 per preset
    breakdown    each stage's share of the time, stacked bars per batch size, presets side by side
    loadgen      p95 and p99 against offered QPS, a line per sub-batch size, target and best marked
    colocation   per-instance p50 slowdown and aggregate throughput against the instance count
    embedding    gathered GB/s against batch size, a line per lowering, beside the gather ceiling

Each run also gets its own figure as a TensorBoard image (figures/<benchmark>, in an event file of
its own, replaced when drawn again): `tensorboard --logdir runs` shows it under Images. Runs of
other benchmarks (benchmarks.machine) are listed and skipped. Every benchmark binary draws its own
run's figure at its end (--figures, on by default).
"""

import sys

from absl import app, flags

from recjax.reporting import figures

_RUNS = flags.DEFINE_list(
    "runs",
    None,
    "Comma-separated run folders, folders of runs (searched at every depth) or results.json files.",
    required=True,
)
_OUT = flags.DEFINE_string(
    "out",
    None,
    "Folder for the PNG and SVG files; default: the deepest folder holding the runs of each "
    "figure.",
)
_TENSORBOARD = flags.DEFINE_bool(
    "tensorboard",
    True,
    "Also write each run's own figure as a TensorBoard image into the run's folder.",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    missing = figures.plotting_missing()
    if missing:
        sys.exit(f"error: {missing}")
    try:
        runs = figures.find_runs(_RUNS.value)
        written = figures.write_figures(runs, out=_OUT.value, tensorboard=_TENSORBOARD.value)
    except figures.ResultsError as error:
        sys.exit(f"error: {error}")
    except figures.NoCommonFolderError as error:
        raise app.UsageError(f"{error} (--out)") from error
    for run in written.skipped:
        print(f"skipped: {run.path} (benchmarks.{run.benchmark} has no figure)")
    if not written.files:
        sys.exit(
            f"error: none of the {len(runs)} runs has a figure; figures exist for "
            f"{list(figures.KINDS)}."
        )
    print(f"drew {len(written.files) // 2} figures from {len(runs) - len(written.skipped)} runs:")
    for path in written.files:
        print(f"figure:      {path}")
    for path in written.event_files:
        print(f"tensorboard: {path}")


if __name__ == "__main__":
    app.run(main)

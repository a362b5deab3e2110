r"""The machine's ceilings: random-row gather, streaming read and float32 matmul throughput.

    python -m benchmarks.machine

Prints a table, and writes results.json and TensorBoard event files into --logdir (the only shared
flag it takes: it builds no model, and refuses --model and the other model flags). Other
benchmarks (benchmarks.embedding) measure the gather ceiling again in their own run, so that their
"% of ceiling" compares numbers taken side by side.
"""

import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.bench import ceilings
from recjax.reporting.fingerprint import fingerprint_summary
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, available_memory_bytes

_TABLE_GIB = flags.DEFINE_float(
    "table_gib", 1.0, "Size of the probed array (GiB); keep it far above the last-level cache."
)
_ROWS_TO_GATHER = flags.DEFINE_integer(
    "rows_to_gather", 20_000_000, "Random rows gathered per gather repeat."
)
_DIMS = flags.DEFINE_list("dims", ["32", "64"], "Row widths (floats) of the gather probes.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048, "n of the [n, n] x [n, n] matmul.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Repeats of each probe (median and best reported).")

flags.register_validator("table_gib", lambda v: v > 0, message="--table_gib must be positive.")
flags.register_validator(
    "rows_to_gather", lambda v: v > 0, message="--rows_to_gather must be positive."
)
flags.register_validator(
    "dims",
    shared.positive_integers,
    message="--dims must be a non-empty comma-separated list of positive integers.",
)
flags.register_validator("matmul_size", lambda v: v > 0, message="--matmul_size must be positive.")
flags.register_validator("repeats", lambda v: v > 0, message="--repeats must be positive.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.refuse_model_flags("machine")
    shared.start_on_cpu()
    table_bytes = int(_TABLE_GIB.value * GIB)
    dims = tuple(int(d) for d in _DIMS.value)
    if any(table_bytes // 4 % dim for dim in dims):
        raise app.UsageError(f"--table_gib must hold a whole number of rows of every dim {dims}.")
    if table_bytes > available_memory_bytes():
        raise app.UsageError(
            f"--table_gib={_TABLE_GIB.value} needs {table_bytes / GIB:.1f} GiB, but only "
            f"{available_memory_bytes() / GIB:.1f} GiB is available."
        )
    try:
        reporter = RunReporter.start("machine", None, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    print(f"logdir:  {reporter.logdir}")
    results = ceilings.measure_ceilings(
        table_bytes, _ROWS_TO_GATHER.value, dims, _MATMUL_SIZE.value, _REPEATS.value
    )
    table = ceilings.format_ceilings(results)
    reporter.write_results({"ceilings": [c.to_json() for c in results]})
    with SummaryWriter(reporter.logdir) as writer:
        for c in results:
            unit = c.unit.replace("/", "_per_").lower()
            writer.scalar(f"machine/{c.probe}_{unit}/median", c.median, step=c.threads)
            writer.scalar(f"machine/{c.probe}_{unit}/best", c.best, step=c.threads)
        reporter.write_texts(writer, {"results": f"```\n{table}\n```"})
    print()
    print(table)
    print()
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)

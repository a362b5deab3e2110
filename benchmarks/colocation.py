r"""Co-location: N independent inference processes at once, per N; latency cost and throughput gain.

    python -m benchmarks.colocation --model=rmc2 --instances=1,2,4 --rows_scale=0.5
    python -m benchmarks.colocation --model=rmc1-tiny --instances=1,2 --duration_s=3

Each instance is its own process with its own model, looping on its own batches for --duration_s,
pinned to its own cores when there are enough (else sharing them, marked oversubscribed). Prints
each instance's p50/p99 and slowdown against N=1, and the aggregate throughput per N; writes
results.json and TensorBoard event files (scalars with N as the step) into --logdir:

    tensorboard --logdir runs/colocation

N copies of a full preset may not fit in memory: the run is refused before starting, naming a
--rows_scale that fits. Processes are always stopped, on failure of one instance and on Ctrl-C.

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override, --ids) are defined in benchmarks/flags.py; every instance builds the same config.
"""

import json
import os
import sys

from absl import app, flags

import configs
from benchmarks import flags as shared
from recjax.bench import colocation
from recjax.layers.embedding_bag import resolve_lowering
from recjax.reporting.fingerprint import fingerprint_summary
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, InsufficientMemoryError

_INSTANCES = flags.DEFINE_list(
    "instances", ["1", "2", "4"], "Comma-separated instance counts N, run one after another."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Batch size of every call.", lower_bound=1)
_DURATION_S = flags.DEFINE_float(
    "duration_s", 10.0, "Seconds each instance times its calls, all at once.", lower_bound=0.1
)
_ROWS_SCALE = flags.DEFINE_float(
    "rows_scale",
    1.0,
    "Scale every table's rows by this factor in (0, 1] (the preset's name gets a -rows<scale> "
    "suffix), so that N copies fit in memory.",
)
_CORES_PER_INSTANCE = flags.DEFINE_integer(
    "cores_per_instance",
    None,
    "Cores (and XLA threads) of each instance, disjoint while they suffice, shared beyond; "
    "default: the usable cores split evenly among the N instances.",
    lower_bound=1,
)

flags.register_validator(
    "instances",
    shared.positive_integers,
    message="--instances must be a non-empty comma-separated list of positive integers.",
)
flags.register_validator(
    "rows_scale",
    lambda value: 0 < value <= 1,
    message="--rows_scale must be in (0, 1].",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.start_on_cpu()
    preset = shared.model_config()
    config = colocation.scale_rows(preset, _ROWS_SCALE.value)
    ids = shared.id_distributions(config)  # the scaled tables: a profile must fit them
    try:
        lowering, lowering_note = resolve_lowering(config.embedding_lowering)
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from error
    counts = tuple(dict.fromkeys(int(value) for value in _INSTANCES.value))
    usable = sorted(os.sched_getaffinity(0))
    if _CORES_PER_INSTANCE.value is not None and _CORES_PER_INSTANCE.value > len(usable):
        raise app.UsageError(
            f"--cores_per_instance must be at most the {len(usable)} usable cores; got "
            f"{_CORES_PER_INSTANCE.value}."
        )
    try:
        needed = colocation.check_memory(
            config,
            max(counts),
            _BATCH_SIZE.value,
            smaller_presets=configs.smaller_presets(preset.name),
        )
    except InsufficientMemoryError as error:
        sys.exit(f"error: {error}")
    try:
        reporter = RunReporter.start("colocation", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    # The parent computes nothing: its JAX backend (started for the fingerprint at the head of
    # results.json) idles while the instances run, and every instance records its own
    # fingerprint (its cores and XLA threads included) in results.json.
    print(f"machine: {len(usable)} usable cores {usable}; {os.cpu_count()} logical CPUs")
    print(f"model:   {config.name}: {config.architecture_summary()}")
    if _ROWS_SCALE.value != 1:
        print(
            f"         a SCALED preset (--rows_scale={_ROWS_SCALE.value:g}): every table has "
            f"{_ROWS_SCALE.value:g} of the rows of {preset.name}; not the full-size model"
        )
    print(
        f"         {config.parameter_bytes / GIB:.2f} GiB of parameters per instance; "
        f"{max(counts)} instances need about {needed / GIB:.1f} GiB"
    )
    print(f"         embedding-bag lowering: {lowering} ({lowering_note})")
    print(f"batch {_BATCH_SIZE.value}, {_DURATION_S.value:g} s of timed calls per N")
    print(f"logdir:  {reporter.logdir}")
    try:
        runs = colocation.run_colocation(
            config,
            counts,
            _BATCH_SIZE.value,
            _DURATION_S.value,
            shared.SEED.value,
            usable,
            cores_per_instance=_CORES_PER_INSTANCE.value,
            huge_pages=shared.HUGE_PAGES.value,
            ids=ids,
        )
    except colocation.InstanceFailedError as error:
        sys.exit(f"error: {error}\nAll instances have been stopped.")
    except KeyboardInterrupt:
        sys.exit("interrupted: all instances have been stopped.")

    title = (
        f"{config.name}: {config.architecture_summary()}; batch {_BATCH_SIZE.value}, "
        f"{_DURATION_S.value:g} s per N"
    )
    table = colocation.format_table(title, runs)
    settings = {
        "instances": list(counts),
        "batch_size": _BATCH_SIZE.value,
        "duration_s": _DURATION_S.value,
        "rows_scale": _ROWS_SCALE.value,
        "seed": shared.SEED.value,
        "huge_pages": shared.HUGE_PAGES.value,
        "embedding_lowering": lowering,
        "ids": shared.IDS.value,
        "usable_cores": usable,
        "cores_per_instance": _CORES_PER_INSTANCE.value,
    }
    reporter.write_results(
        {
            "scaled_from": preset.name if _ROWS_SCALE.value != 1 else None,
            "settings": settings,
            "results": colocation.to_json(runs),
        }
    )
    with SummaryWriter(reporter.logdir) as writer:
        colocation.write_summaries(writer, runs)
        reporter.write_texts(
            writer,
            {
                "settings": "```\n" + json.dumps(settings, indent=2) + "\n```",
                "results": f"`{reporter.command}`\n\n```\n{table}\n```",
            },
        )
    print()
    first = runs[0]
    print(f"machine (instance 0 of N={first.instances}): ", end="")
    print(fingerprint_summary(first.results[0].fingerprint))
    print(table)
    print()
    print("slowdown: the instance's p50 (p99) over the N=1 instance's; samples/s: batch / mean.")
    shared.draw_figures(reporter.logdir)
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)

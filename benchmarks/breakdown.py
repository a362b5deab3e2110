r"""Operator breakdown of compiled inference: the model's stages (for a DLRM: embedding, bottom
MLP, interaction, top MLP) and the rest.

    python -m benchmarks.breakdown --model=rmc1
    python -m benchmarks.breakdown --model=rmc2-tiny --batch_sizes=1,64 --profile

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override, --ids) are defined in benchmarks/flags.py.

Each stage the model's config names (`config.stages()`) is compiled as its own program and timed
on its real inputs; the table gives each stage's share of the end-to-end time (the whole compiled
predict call) per batch size, and the rest (end to end minus the sum of the stages, negative where
running the stages apart costs more than running them together). See `recjax.bench.breakdown` for
the method. Writes results.json and TensorBoard event files (scalars share/<stage> with the batch
size as the step) into --logdir; --profile adds a jax.profiler trace there:

    tensorboard --logdir runs/breakdown
"""

import dataclasses
import os
import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.bench import breakdown
from recjax.bench.timing import TimingBudget
from recjax.inputs import id_distributions
from recjax.layers.embedding_bag import resolve_lowering
from recjax.reporting.fingerprint import fingerprint_summary
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, peak_resident_bytes
from recjax.runtime.model_setup import build_model

_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "16", "64", "256", "1024"], "Comma-separated batch sizes."
)
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed calls per program before timing.")
_MIN_ITERATIONS = flags.DEFINE_integer("min_iterations", 30, "Fewest timed calls per program.")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 1.0, "Shortest timing per program (s).")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds", 5.0, "Longest timing per program (s); overrides --min_iterations."
)
_ROUNDS = flags.DEFINE_integer(
    "rounds",
    5,
    "The programs of a batch size are timed side by side, in this many interleaved rounds, each "
    "with 1/rounds of the budget above.",
    lower_bound=1,
)
_PROFILE = flags.DEFINE_bool(
    "profile",
    False,
    "Also write a jax.profiler trace of 10 end-to-end calls per batch size into the log "
    "directory (viewable with TensorBoard's profile plugin).",
)

flags.register_validator(
    "batch_sizes",
    shared.positive_integers,
    message="--batch_sizes must be a non-empty comma-separated list of positive integers.",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.start_on_cpu()
    config = shared.model_config()
    ids = shared.id_distributions(config)
    batch_sizes = tuple(dict.fromkeys(int(value) for value in _BATCH_SIZES.value))
    try:
        budget = TimingBudget(
            warmup=_WARMUP.value,
            min_iterations=_MIN_ITERATIONS.value,
            min_seconds=_MIN_SECONDS.value,
            max_seconds=_MAX_SECONDS.value,
        )
        lowering, lowering_note = resolve_lowering(config.embedding_lowering)
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from error
    needed = shared.check_memory_or_exit(config, max(batch_sizes))
    try:
        reporter = RunReporter.start("breakdown", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    shared.print_model_header(config, needed, lowering, lowering_note)
    print(f"logdir:  {reporter.logdir}")
    model, huge_pages = build_model(config, shared.SEED.value, shared.HUGE_PAGES.value)

    breakdowns = breakdown.measure_breakdowns(
        model, batch_sizes, budget, shared.SEED.value, rounds=_ROUNDS.value, ids=ids
    )
    if _PROFILE.value:
        print("profiling 10 end-to-end calls per batch size ...")
        breakdown.profile_end_to_end(
            model, batch_sizes, reporter.logdir, shared.SEED.value, ids=ids
        )
    title = f"{config.name}: {config.architecture_summary()}; shares of the end-to-end p50"
    table = breakdown.format_table(title, breakdowns)
    reporter.write_results(
        {
            "embedding_lowering": lowering,
            "huge_pages": huge_pages,
            "budget": dataclasses.asdict(budget),
            "rounds": _ROUNDS.value,
            "ids": shared.IDS.value,
            "id_distributions": id_distributions.describe(ids, config),
            "share_sum_tolerance": breakdown.SHARE_SUM_TOLERANCE,
            "results": [b.to_json() for b in breakdowns],
        }
    )
    with SummaryWriter(reporter.logdir) as writer:
        breakdown.write_summaries(writer, breakdowns)
        reporter.write_texts(writer, {"results": f"`{reporter.command}`\n\n```\n{table}\n```"})
    print()
    print(table)
    print()
    print(breakdown.column_notes(breakdowns[0].stage_kinds))
    print(f"peak resident memory: {peak_resident_bytes() / GIB:.2f} GiB")
    if _PROFILE.value:
        print(f"profile:     {os.path.join(reporter.logdir, 'plugins', 'profile')}")
    shared.draw_figures(reporter.logdir)
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)

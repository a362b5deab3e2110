r"""Operator breakdown of compiled inference: embedding, bottom MLP, interaction, top MLP, rest.

    python -m benchmarks.breakdown --model=rmc1
    python -m benchmarks.breakdown --model=rmc2-tiny --batch_sizes=1,64 --profile

Each stage is compiled as its own program and timed on its real inputs; the table gives each
stage's share of the end-to-end time (the whole compiled predict call) per batch size, and the
rest (end to end minus the sum of the stages, negative where running the stages apart costs more
than running them together). See `recjax.bench.breakdown` for the method. Writes results.json and
TensorBoard event files (scalars share/<stage> with the batch size as the step) into --logdir;
--profile adds a jax.profiler trace there:

    tensorboard --logdir runs/breakdown
"""

import dataclasses
import json
import os
import shlex
import sys

from absl import app, flags

import configs
from benchmarks import common
from recjax.bench import breakdown
from recjax.bench.timing import TimingBudget
from recjax.layers.embedding_bag import resolve_lowering
from recjax.reporting.fingerprint import fingerprint_summary, machine_fingerprint
from recjax.reporting.logdir import default_logdir, prepare_logdir, write_json
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, peak_resident_bytes
from recjax.runtime.model_setup import HUGE_PAGES_FLAG_HELP, build_model

_MODEL = flags.DEFINE_enum("model", "rmc1", configs.names(), "Model preset to break down.")
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "16", "64", "256", "1024"], "Comma-separated batch sizes."
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the parameters and the synthetic batches.")
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
_HUGE_PAGES = flags.DEFINE_bool("huge_pages", True, HUGE_PAGES_FLAG_HELP)
_LOGDIR = flags.DEFINE_string(
    "logdir", None, "Where results.json and event files go; default runs/breakdown/<model>-<time>."
)

flags.register_validator(
    "batch_sizes",
    common.positive_integers,
    message="--batch_sizes must be a non-empty comma-separated list of positive integers.",
)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.start_on_cpu()
    config = configs.get(_MODEL.value)
    batch_sizes = tuple(dict.fromkeys(int(value) for value in _BATCH_SIZES.value))
    try:
        budget = TimingBudget(
            warmup=_WARMUP.value,
            min_iterations=_MIN_ITERATIONS.value,
            min_seconds=_MIN_SECONDS.value,
            max_seconds=_MAX_SECONDS.value,
        )
        lowering, lowering_note = resolve_lowering(config.embedding_lowering)
        logdir = prepare_logdir(_LOGDIR.value or default_logdir("breakdown", config.name))
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from error
    needed = common.check_memory_or_exit(config, max(batch_sizes))

    fingerprint = machine_fingerprint()
    print(f"machine: {fingerprint_summary(fingerprint)}")
    common.print_model_header(config, needed, lowering, lowering_note)
    print(f"logdir:  {logdir}")
    model, huge_pages = build_model(config, _SEED.value, _HUGE_PAGES.value)

    breakdowns = breakdown.measure_breakdowns(
        model, batch_sizes, budget, _SEED.value, rounds=_ROUNDS.value
    )
    if _PROFILE.value:
        print("profiling 10 end-to-end calls per batch size ...")
        breakdown.profile_end_to_end(model, batch_sizes, logdir, _SEED.value)
    title = f"{config.name}: {config.architecture_summary()}; shares of the end-to-end p50"
    table = breakdown.format_table(title, breakdowns)
    command = shlex.join(
        [sys.executable.split(os.sep)[-1], "-m", "benchmarks.breakdown", *sys.argv[1:]]
    )
    peak = peak_resident_bytes()
    results_path = os.path.join(logdir, "results.json")
    write_json(
        results_path,
        {
            "benchmark": "breakdown",
            "command": command,
            "model": config.name,
            "config": dataclasses.asdict(config),
            "cost": config.cost(),
            "embedding_lowering": lowering,
            "huge_pages": huge_pages,
            "budget": dataclasses.asdict(budget),
            "rounds": _ROUNDS.value,
            "fingerprint": fingerprint,
            "peak_resident_bytes": peak,
            "share_sum_tolerance": breakdown.SHARE_SUM_TOLERANCE,
            "results": [b.to_json() for b in breakdowns],
        },
    )
    with SummaryWriter(logdir) as writer:
        breakdown.write_summaries(writer, breakdowns)
        writer.text("config", f"`{config.architecture_summary()}`\n\n```\n{config}\n```")
        writer.text("fingerprint", "```\n" + json.dumps(fingerprint, indent=2) + "\n```")
        writer.text("results", f"`{command}`\n\n```\n{table}\n```")
    print()
    print(table)
    print()
    print(
        "FC/stages: bottom + top MLP over the sum of the stage times (the paper's FC share). "
        "calls ms: the fixed call cost of the 4 stage programs together (programs taking "
        "the same arguments and doing nothing), which end to end pays once."
    )
    print(f"peak resident memory: {peak / GIB:.2f} GiB")
    print(f"results:     {results_path}")
    if _PROFILE.value:
        print(f"profile:     {os.path.join(logdir, 'plugins', 'profile')}")
    print(f"tensorboard: tensorboard --logdir {logdir}")


if __name__ == "__main__":
    app.run(main)

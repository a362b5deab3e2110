r"""A preset's embedding bags alone: every lowering (and torch.nn.EmbeddingBag) per batch size.

    python -m benchmarks.embedding --model=rmc2
    python -m benchmarks.embedding --model=rmc1 --lowerings=pooling_loop,native --batch_sizes=256

Reports latency, GB/s and rows/s gathered, and the percentage of the gather ceiling that
`benchmarks.machine` measures, here measured again in the same run on the preset's own tables.
Writes results.json and TensorBoard event files into --logdir.
"""

import dataclasses
import json
import os
import sys
import time

from absl import app, flags
from flax import nnx

import configs
from benchmarks import common
from recjax import native
from recjax.bench import ceilings, embedding_benchmark
from recjax.bench.timing import TimingBudget
from recjax.layers.embedding_bag import LOWERINGS, EmbeddingBagCollection
from recjax.reporting.fingerprint import fingerprint_summary, machine_fingerprint
from recjax.reporting.logdir import default_logdir, prepare_logdir, write_json
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.huge_pages import back_with_huge_pages
from recjax.runtime.model_setup import HUGE_PAGES_FLAG_HELP

_IMPLEMENTATIONS = (*sorted(LOWERINGS), embedding_benchmark.TORCH)

_MODEL = flags.DEFINE_enum("model", "rmc2", configs.names(), "Model preset whose tables to use.")
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "16", "64", "256", "1024"], "Comma-separated batch sizes."
)
_IMPLEMENTATIONS_FLAG = flags.DEFINE_list(
    "implementations",
    list(_IMPLEMENTATIONS),
    f"Comma-separated subset of {list(_IMPLEMENTATIONS)}; 'torch' is skipped, with a note, when "
    "torch is not installed and 'native' when the native library was not built.",
)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the tables and ids.")
_ROTATE_MIB = flags.DEFINE_integer(
    "rotate_mib",
    128,
    "Timed calls rotate through distinct batches holding at least this many MiB of rows "
    "(at most 64 batches), so that one call's rows are not cached for the next.",
)
_MIN_ITERATIONS = flags.DEFINE_integer("min_iterations", 20, "Fewest timed calls.")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 1.0, "Shortest timing per case (s).")
_MAX_SECONDS = flags.DEFINE_float("max_seconds", 5.0, "Longest timing per case (s).")
_CEILING_ROWS = flags.DEFINE_integer(
    "ceiling_rows", 10_000_000, "Random rows gathered per repeat of the ceiling probe."
)
_HUGE_PAGES = flags.DEFINE_bool("huge_pages", True, HUGE_PAGES_FLAG_HELP)
_LOGDIR = flags.DEFINE_string(
    "logdir", None, "Where results.json and event files go; default runs/embedding/<model>-<time>."
)

flags.register_validator(
    "batch_sizes",
    common.positive_integers,
    message="--batch_sizes must be a non-empty comma-separated list of positive integers.",
)
flags.register_validator(
    "implementations",
    lambda values: bool(values) and set(values) <= set(_IMPLEMENTATIONS),
    message=f"--implementations must be a non-empty subset of {list(_IMPLEMENTATIONS)}.",
)
flags.register_validator("rotate_mib", lambda v: v > 0, message="--rotate_mib must be positive.")


def _runnable(requested: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """The implementations that can run here, and a note for each one skipped."""
    runnable, notes = [], []
    for name in dict.fromkeys(requested):
        if name == embedding_benchmark.TORCH:
            available, detail = embedding_benchmark.torch_available()
        elif name == "native":
            available, detail = native.availability()
        else:
            available, detail = True, ""
        if available:
            runnable.append(name)
        else:
            notes.append(f"skipping {name}: {detail}")
    return tuple(runnable), notes


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    common.start_on_cpu()
    config = configs.get(_MODEL.value)
    batch_sizes = tuple(int(v) for v in _BATCH_SIZES.value)
    implementations, notes = _runnable(_IMPLEMENTATIONS_FLAG.value)
    if not implementations:
        raise app.UsageError("None of the requested implementations can run: " + "; ".join(notes))
    try:
        budget = TimingBudget(
            warmup=2,
            min_iterations=_MIN_ITERATIONS.value,
            min_seconds=_MIN_SECONDS.value,
            max_seconds=_MAX_SECONDS.value,
        )
        logdir = prepare_logdir(_LOGDIR.value or default_logdir("embedding", config.name))
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    common.check_memory_or_exit(config, max(batch_sizes))

    fingerprint = machine_fingerprint()
    print(f"machine: {fingerprint_summary(fingerprint)}")
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(f"logdir:  {logdir}")
    for note in notes:
        print(f"note:    {note}")
    start = time.perf_counter()
    bags = EmbeddingBagCollection(config.tables, lowering="gather_sum", rngs=nnx.Rngs(_SEED.value))
    print(f"built the tables in {time.perf_counter() - start:.1f} s")
    huge_pages = "4 KiB pages (--nohuge_pages)"
    if _HUGE_PAGES.value:
        start = time.perf_counter()
        huge_pages = back_with_huge_pages(bags.weight[...])
        print(f"tables: {huge_pages} ({time.perf_counter() - start:.1f} s)")
    threads = ceilings.usable_cores()
    print(f"measuring the gather ceiling on the tables ({threads} threads) ...")
    table_view = bags.weight[...].__array__()  # a read-only view of the JAX buffer, no copy
    ceiling = ceilings.gather_ceiling(table_view, _CEILING_ROWS.value, threads, repeats=5)
    measurements = embedding_benchmark.run_embedding_benchmark(
        config,
        bags,
        batch_sizes,
        implementations,
        budget,
        rotate_bytes=_ROTATE_MIB.value * 2**20,
        seed=_SEED.value,
    )
    row_bytes = config.embedding_dim * 4
    table = embedding_benchmark.format_table(measurements, ceiling, row_bytes)
    command = " ".join(["python -m benchmarks.embedding", *sys.argv[1:]])
    results_path = os.path.join(logdir, "results.json")
    write_json(
        results_path,
        {
            "benchmark": "embedding",
            "command": command,
            "model": config.name,
            "config": dataclasses.asdict(config),
            "fingerprint": fingerprint,
            "ceiling": ceiling.to_json(),
            "huge_pages": huge_pages,
            "notes": notes,
            "results": [m.to_json(ceiling, row_bytes) for m in measurements],
        },
    )
    with SummaryWriter(logdir) as writer:
        writer.scalar("ceiling/gather_gigabytes_per_s/median", ceiling.median, step=0)
        for m in measurements:
            row = m.to_json(ceiling, row_bytes)
            for key in ("p50_ms", "p99_ms", "gigabytes_per_s", "percent_of_ceiling"):
                writer.scalar(f"{m.implementation}/{key}", row[key], step=m.batch_size)
            writer.histogram(f"{m.implementation}/latency_ms", m.latencies_s * 1e3, m.batch_size)
        writer.text("fingerprint", "```\n" + json.dumps(fingerprint, indent=2) + "\n```")
        writer.text("results", f"`{command}`\n\n```\n{table}\n```")
    print()
    print(table)
    print()
    common.print_output_paths(results_path, logdir)


if __name__ == "__main__":
    app.run(main)

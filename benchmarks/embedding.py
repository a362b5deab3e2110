r"""A model's embedding lookups alone: every lowering (and torch.nn.EmbeddingBag) per batch size.

    python -m benchmarks.embedding --model=rmc2
    python -m benchmarks.embedding --model=rmc1 --implementations=pooling_loop,native \
        --batch_sizes=256

Times the model's `EmbeddingCollection` (any family: `model.sparse_arch`) under jit, for each
lowering, on rotated synthetic batches; and one torch.nn.EmbeddingBag per feature on the same
table memory, when every feature is a sum-pooled, fixed-length, unweighted bag (else torch is
skipped, with a note saying why). Reports latency, GB/s and rows/s gathered (bytes at every
feature's full capacity), and the percentage of the gather ceiling that `benchmarks.machine`
measures, here measured again in the same run on the model's largest table group. Writes
results.json and TensorBoard event files into --logdir.

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override, --ids) are defined in benchmarks/flags.py; --embedding_lowering does not apply here:
every lowering named in --implementations is timed.
"""

import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.bench import ceilings, embedding_benchmark
from recjax.bench.timing import TimingBudget
from recjax.inputs import locality
from recjax.inputs.synthetic import synthetic_features
from recjax.reporting.fingerprint import fingerprint_summary, last_level_cache
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.model_setup import build_model

_IMPLEMENTATIONS = embedding_benchmark.IMPLEMENTATIONS

_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "16", "64", "256", "1024"], "Comma-separated batch sizes."
)
_IMPLEMENTATIONS_FLAG = flags.DEFINE_list(
    "implementations",
    list(_IMPLEMENTATIONS),
    f"Comma-separated subset of {list(_IMPLEMENTATIONS)}; 'torch' is skipped, with a note, when "
    "torch is not installed or the model has features nn.EmbeddingBag's sum of fixed-length "
    "bags does not compute, and 'native' when the native library was not built.",
)
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

flags.register_validator(
    "batch_sizes",
    shared.positive_integers,
    message="--batch_sizes must be a non-empty comma-separated list of positive integers.",
)
flags.register_validator(
    "implementations",
    lambda values: bool(values) and set(values) <= set(_IMPLEMENTATIONS),
    message=f"--implementations must be a non-empty subset of {list(_IMPLEMENTATIONS)}.",
)
flags.register_validator("rotate_mib", lambda v: v > 0, message="--rotate_mib must be positive.")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if flags.FLAGS["embedding_lowering"].present:
        raise app.UsageError(
            "--embedding_lowering does not apply to benchmarks.embedding, which times every "
            "lowering named in --implementations."
        )
    shared.start_on_cpu()
    config = shared.model_config()
    ids = shared.id_distributions(config)
    batch_sizes = tuple(int(v) for v in _BATCH_SIZES.value)
    implementations, notes = embedding_benchmark.runnable_implementations(
        config, _IMPLEMENTATIONS_FLAG.value
    )
    if not implementations:
        raise app.UsageError("None of the requested implementations can run: " + "; ".join(notes))
    try:
        budget = TimingBudget(
            warmup=2,
            min_iterations=_MIN_ITERATIONS.value,
            min_seconds=_MIN_SECONDS.value,
            max_seconds=_MAX_SECONDS.value,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    shared.check_memory_or_exit(config, max(batch_sizes))
    try:
        reporter = RunReporter.start("embedding", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(
        f"         {len(config.features)} sparse features, {config.lookups_per_sample} lookups and "
        f"{config.embedding_bytes_per_sample:,} bytes of rows per sample at full capacity"
    )
    print(f"logdir:  {reporter.logdir}")
    for note in notes:
        print(f"note:    {note}")
    model, huge_pages = build_model(config, shared.SEED.value, shared.HUGE_PAGES.value)
    collection = model.sparse_arch
    threads = ceilings.usable_cores()
    print(f"measuring the gather ceiling on the largest table group ({threads} threads) ...")
    ceiling, ceiling_source = embedding_benchmark.measure_gather_ceiling(
        collection, _CEILING_ROWS.value, threads, repeats=5
    )
    measurements = embedding_benchmark.run_embedding_benchmark(
        config,
        collection,
        batch_sizes,
        implementations,
        budget,
        rotate_bytes=_ROTATE_MIB.value * 2**20,
        seed=shared.SEED.value,
        ids=ids,
    )
    table = embedding_benchmark.format_table(measurements, ceiling, ceiling_source)
    # The locality of the ids, on the first of each batch size's rotated batches.
    cache_name, cache_bytes = last_level_cache(reporter.fingerprint)
    localities, memo = [], {}
    for batch_size in batch_sizes:
        seed = embedding_benchmark.batch_seed(shared.SEED.value, batch_size, 0)
        batch = synthetic_features(config, batch_size, seed=seed, ids=ids)
        localities += locality.measure_locality(
            config, batch, ids, shared.SEED.value, cache_bytes, memo=memo
        )
    locality_table = locality.format_locality(
        localities,
        f"ids {shared.IDS.value}; LRU of the {cache_name}, {cache_bytes / 2**20:g} MiB, per table "
        "alone; first rotated batch",
    )
    reporter.write_results(
        {
            "ceiling": {**ceiling.to_json(), "measured_on": ceiling_source},
            "huge_pages": huge_pages,
            "notes": notes,
            "ids": shared.IDS.value,
            "locality": {
                "cache": {"level": cache_name, "bytes": cache_bytes},
                "tables": [item.to_json() for item in localities],
            },
            "results": [m.to_json(ceiling) for m in measurements],
        }
    )
    with SummaryWriter(reporter.logdir) as writer:
        writer.scalar("ceiling/gather_gigabytes_per_s/median", ceiling.median, step=0)
        for m in measurements:
            row = m.to_json(ceiling)
            for key in ("p50_ms", "p99_ms", "gigabytes_per_s", "percent_of_ceiling"):
                writer.scalar(f"{m.implementation}/{key}", row[key], step=m.batch_size)
            writer.histogram(f"{m.implementation}/latency_ms", m.latencies_s * 1e3, m.batch_size)
        locality.write_summaries(writer, localities)
        reporter.write_texts(
            writer,
            {"results": f"`{reporter.command}`\n\n```\n{table}\n\n{locality_table}\n```"},
        )
    print()
    print(table)
    print()
    print(locality_table)
    print()
    shared.draw_figures(reporter.logdir)
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)

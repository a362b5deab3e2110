r"""Open-loop load generator: Poisson arrivals against a compiled preset, and a QPS search.

    python -m benchmarks.loadgen --model=rmc1 --qps=200 --duration_s=30
    python -m benchmarks.loadgen --model=rmc2 --qps=10 --target_p95_ms=100 --sub_batch=64,256

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override, --ids) are defined in benchmarks/flags.py; here --seed also seeds the arrival times and
the query sizes. Any model family is served the same way: its synthetic inputs follow from its
config.

Requests arrive on a seeded Poisson schedule (exponential inter-arrival times) fixed in advance;
each asks to rank a query of candidate items, split into sub-batches of at most --sub_batch items
that a pool of --workers threads serves from a queue. Latency runs from each request's scheduled
arrival to the end of its last sub-batch. With --target_p95_ms or --target_p99_ms the binary
searches for the highest offered rate that meets the target. Prints progress and a table, and
writes results.json and TensorBoard event files into --logdir:

    tensorboard --logdir runs/loadgen
"""

import dataclasses
import os
import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.layers.embedding_bag import resolve_lowering
from recjax.models.family import ModelConfig
from recjax.reporting.fingerprint import fingerprint_summary
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime.memory import GIB, peak_resident_bytes
from recjax.runtime.model_setup import build_model
from recjax.serving import loadgen
from recjax.serving.query_sizes import SPEC_HELP, QuerySizeDistribution
from recjax.serving.workload import ModelWorkload
from recjax.train import checkpoints

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Measure the trained weights of a benchmarks.train checkpoint (its checkpoint directory, or "
    "one step's folder in it) instead of freshly initialized ones; it must be of --model's "
    "architecture.",
)
_QPS = flags.DEFINE_float(
    "qps",
    100.0,
    "Offered load: mean arrival rate of the Poisson process, in queries per second (> 0). With a "
    "latency target, the rate the search starts from.",
)
_DURATION_S = flags.DEFINE_float(
    "duration_s", 10.0, "Length of the arrival schedule of each run, in seconds (> 0)."
)
_MAX_REQUESTS = flags.DEFINE_integer(
    "max_requests", 100_000, "Most requests in one run's schedule (>= 1); bounds a run at high qps."
)
_QUERY_SIZES = flags.DEFINE_string(
    "query_sizes",
    "lognormal:5.1,0.2",
    f"Distribution of the items per query: {SPEC_HELP}. A quantile file holds K >= 2 "
    "non-decreasing numbers, the quantiles at probabilities 0, 1/(K-1), ..., 1. The default is "
    "DeepRecSys's (median about 164 items).",
)
_MAX_QUERY_SIZE = flags.DEFINE_integer(
    "max_query_size", 1024, "Query sizes are clamped to [1, max_query_size] (>= 1)."
)
_SUB_BATCH = flags.DEFINE_list(
    "sub_batch",
    ["64"],
    "Comma-separated sub-batch sizes: a query is split into sub-batches of at most this many "
    "items, padded up to a compiled size (powers of two below it, and itself). Several values: one "
    "run (or one search) each.",
)
_WORKERS = flags.DEFINE_integer(
    "workers", 2, "Worker threads serving sub-batches from the queue (>= 1); they share one model."
)
_DRAIN_TIMEOUT_S = flags.DEFINE_float(
    "drain_timeout_s",
    5.0,
    "After the last arrival, how long a run waits for queued requests before it stops (> 0); "
    "requests still unfinished then are reported and fail any latency target.",
)
_TARGET_P95_MS = flags.DEFINE_float(
    "target_p95_ms",
    None,
    "Search for the highest qps whose p95 latency is at most this many ms (and no request is "
    "left unfinished).",
)
_TARGET_P99_MS = flags.DEFINE_float(
    "target_p99_ms", None, "As --target_p95_ms, for the p99 latency. Give at most one target."
)
_SEARCH_RESOLUTION = flags.DEFINE_float(
    "search_resolution",
    0.05,
    "The search stops once the lowest missing rate is within this fraction of the highest "
    "meeting rate (0 < value < 1).",
)
_SEARCH_MAX_RUNS = flags.DEFINE_integer(
    "search_max_runs", 10, "Most runs per sub-batch size in a search (>= 2)."
)
_INPUT_VARIANTS = flags.DEFINE_integer(
    "input_variants",
    8,
    "Synthetic batches generated per compiled size before serving, used in turn (>= 1).",
)
_WARMUP_CALLS = flags.DEFINE_integer(
    "warmup_calls", 3, "Untimed calls per compiled size before the first run (>= 0)."
)

flags.register_validator(
    "sub_batch",
    shared.positive_integers,
    message="--sub_batch must be a non-empty comma-separated list of integers >= 1.",
)
flags.register_validator(
    "input_variants", lambda value: value >= 1, message="--input_variants must be >= 1."
)
flags.register_validator("warmup_calls", lambda value: value >= 0, "--warmup_calls must be >= 0.")
flags.register_multi_flags_validator(
    ["target_p95_ms", "target_p99_ms"],
    lambda values: None in values.values(),
    message="Give at most one of --target_p95_ms and --target_p99_ms.",
)


def _settings() -> loadgen.LoadSettings:
    percentile, target = None, None
    if _TARGET_P95_MS.value is not None:
        percentile, target = "p95", _TARGET_P95_MS.value
    elif _TARGET_P99_MS.value is not None:
        percentile, target = "p99", _TARGET_P99_MS.value
    return loadgen.LoadSettings(
        qps=_QPS.value,
        duration_s=_DURATION_S.value,
        max_requests=_MAX_REQUESTS.value,
        query_sizes=QuerySizeDistribution.parse(_QUERY_SIZES.value),
        max_query_size=_MAX_QUERY_SIZE.value,
        sub_batches=tuple(dict.fromkeys(int(value) for value in _SUB_BATCH.value)),
        workers=_WORKERS.value,
        drain_timeout_s=_DRAIN_TIMEOUT_S.value,
        seed=shared.SEED.value,
        target_percentile=percentile,
        target_ms=target,
        search_resolution=_SEARCH_RESOLUTION.value,
        search_max_runs=_SEARCH_MAX_RUNS.value,
    )


def _hparams(
    config: ModelConfig, settings: loadgen.LoadSettings
) -> dict[str, bool | int | float | str]:
    return {
        "model": config.name,
        "embedding_lowering": resolve_lowering(config.embedding_lowering)[0],
        "qps": settings.qps,
        "duration_s": settings.duration_s,
        "query_sizes": settings.query_sizes.spec,
        "max_query_size": settings.max_query_size,
        "sub_batch": ",".join(map(str, settings.sub_batches)),
        "workers": settings.workers,
        "seed": settings.seed,
        "ids": shared.IDS.value,
        "target": f"{settings.target_percentile} <= {settings.target_ms:g} ms"
        if settings.searching
        else "none",
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    shared.start_on_cpu()
    config = shared.model_config()
    ids = shared.id_distributions(config)
    if _CHECKPOINT.value:
        try:
            checkpoints.checkpoint_meta(_CHECKPOINT.value, config)
        except (FileNotFoundError, ValueError) as error:
            raise app.UsageError(f"--checkpoint: {error}") from error
    try:
        settings = _settings()
        lowering, lowering_note = resolve_lowering(config.embedding_lowering)
    except (ValueError, RuntimeError) as error:
        raise app.UsageError(str(error)) from error
    sizes = settings.compiled_sizes()
    shared.check_memory_or_exit(config, max(sizes))
    try:
        reporter = RunReporter.start("loadgen", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(f"         lowering {lowering} ({lowering_note}); compiled batch sizes {list(sizes)}")
    print(
        f"load:    Poisson arrivals, {settings.query_sizes.spec} items per query (clamped to "
        f"[1, {settings.max_query_size}]), sub_batch {list(settings.sub_batches)}, "
        f"{settings.workers} workers, {settings.duration_s:g} s per run"
    )
    if settings.searching:
        print(
            f"search:  highest qps with {settings.target_percentile} <= {settings.target_ms:g} ms, "
            f"from {settings.qps:g} qps, resolution {settings.search_resolution:.0%}, at most "
            f"{settings.search_max_runs} runs per sub_batch"
        )
    print(f"logdir:  {reporter.logdir}")
    if _CHECKPOINT.value:
        model, huge_pages = checkpoints.build_trained_model(
            config, _CHECKPOINT.value, shared.HUGE_PAGES.value
        )
    else:
        model, huge_pages = build_model(config, settings.seed, shared.HUGE_PAGES.value)
    workload = ModelWorkload(
        model, sizes, seed=settings.seed, variants=_INPUT_VARIANTS.value, ids=ids
    )
    print(
        f"compiled {len(sizes)} batch sizes in {workload.compile_seconds:.1f} s and generated "
        f"{_INPUT_VARIANTS.value} input batches per size ({workload.setup_seconds:.1f} s in all)"
    )
    workload.warm_up(_WARMUP_CALLS.value)
    try:
        points, searches = loadgen.run_all(workload, settings)
    except KeyboardInterrupt:
        sys.exit("interrupted: the workers were stopped; no results written.")

    table = loadgen.format_table(points, settings)
    search_text = loadgen.format_search(searches, settings) if searches else ""
    cpu_text = loadgen.format_generator_cpu(points)
    best = loadgen.best_configuration(searches)
    reporter.write_results(
        {
            "embedding_lowering": lowering,
            "huge_pages": huge_pages,
            "checkpoint": _CHECKPOINT.value,
            "settings": {
                **dataclasses.asdict(settings),
                "query_sizes": settings.query_sizes.spec,
                "compiled_sizes": list(sizes),
                "input_variants": _INPUT_VARIANTS.value,
                "warmup_calls": _WARMUP_CALLS.value,
                "ids": shared.IDS.value,
            },
            "compile_seconds": {str(k): v for k, v in workload.predictor.compile_seconds.items()},
            "searches": {
                str(sub_batch): {
                    "best_qps": result.best.qps if result.best else None,
                    "next_step_up_qps": result.next_step_up.qps if result.next_step_up else None,
                    "converged": result.converged,
                    "resolution": result.resolution,
                }
                for sub_batch, result in searches.items()
            },
            "best": dataclasses.asdict(best) if best is not None else None,
            "runs": [point.to_json() for point in points],
        }
    )
    report = "\n\n".join(text for text in (table, search_text, cpu_text) if text)
    with SummaryWriter(reporter.logdir) as writer:
        loadgen.write_summaries(
            writer,
            points,
            searches,
            hparams=_hparams(config, settings),
            texts={"results": f"`{reporter.command}`\n\n```\n{report}\n```"},
            trial_id=os.path.basename(reporter.logdir),
        )
        reporter.write_texts(writer)
    print()
    print(f"{config.name}: {config.architecture_summary()}")
    print(report)
    print(f"peak resident memory: {peak_resident_bytes() / GIB:.2f} GiB")
    shared.draw_figures(reporter.logdir)
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)

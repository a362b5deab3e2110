r"""Compiled (jit) versus eager inference latency of one preset, per batch size.

    python -m benchmarks.latency --model=rmc2
    python -m benchmarks.latency --model=rmc3-tiny --batch_sizes=1,64 --modes=jit
    python -m benchmarks.latency --model=rmc1 --modes=jit,torch   # needs pip install -e '.[torch]'
    python -m benchmarks.latency --model=rmc2 --override=table_dtype=int8 --modes=jit,torchrec
    python -m benchmarks.latency --model=rmc2-tiny --override=top_mlp=512,256,1
    python -m benchmarks.latency --model=rmc2 --modes=jit --ids=zipf:1.05
    python -m benchmarks.latency --model=dcnv2-full-scaled --processes=4 \
        --memory_per_process=64MiB --batch_sizes=64,256,1024   # sharded over 4 local processes

With --processes=N (N > 1) it times the compiled model with its tables sharded over N processes
(`recjax.bench.sharded_latency`), beside the unsharded model on the same batches where this
machine holds it. Locally it starts the N processes itself; on real hosts, run the same command on
every host with --coordinator=HOST:PORT and --process_id=K (as jax.distributed.initialize takes
them).

The flags shared by every binary (--model, --seed, --embedding_lowering, --huge_pages, --logdir,
--override, --ids) are defined in benchmarks/flags.py.

Prints progress and a table (p50/p90/p99/mean latency, samples/s, compile time, jit speedup), the
locality of the ids per table (unique rows per batch, the hottest 1% of rows' share, the hit rate
of an LRU cache the size of the last-level cache; see recjax/inputs/locality.py), and writes
results.json and TensorBoard event files into --logdir:

    tensorboard --logdir runs/latency
"""

import dataclasses
import os
import sys

from absl import app, flags

from benchmarks import flags as shared
from recjax.bench import latency_bound, latency_sweep, sharded_latency
from recjax.bench.timing import TimingBudget
from recjax.inputs import id_distributions, locality
from recjax.interop import torch_twins, torchrec_twins
from recjax.layers.embedding_bag import resolve_lowering
from recjax.models.family import float32_config
from recjax.parallel import launch, planner
from recjax.parallel.sharded_collection import MemoryBudgetError
from recjax.parallel.sharding import MeshShape
from recjax.reporting.fingerprint import fingerprint_summary, last_level_cache
from recjax.reporting.run_reporter import RunReporter
from recjax.reporting.summary_writer import SummaryWriter
from recjax.runtime import threads
from recjax.runtime.memory import GIB, peak_resident_bytes
from recjax.runtime.model_setup import build_model
from recjax.train import checkpoints

TORCH_HUGE_PAGES_VARIABLE = "THP_MEM_ALLOC_ENABLE"

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint",
    None,
    "Measure the trained weights of a benchmarks.train checkpoint (its checkpoint directory, or "
    "one step's folder in it) instead of freshly initialized ones; it must be of --model's "
    "architecture.",
)
_BATCH_SIZES = flags.DEFINE_list(
    "batch_sizes", ["1", "16", "64", "256", "1024"], "Comma-separated batch sizes to sweep."
)
_MODES = flags.DEFINE_list(
    "modes",
    ["jit", "eager"],
    "Comma-separated modes: jit (AOT-compiled for the CPU backend), eager (the same function op "
    "by op under jax.disable_jit), torch (the same weights in the family's eager PyTorch twin, "
    "for families that have one; needs the torch extra; timed with the jit budget), torchrec "
    "(the same weights in TorchRec's quantized inference model: int8 row-wise tables over "
    "FBGEMM, float32 MLPs; needs the torchrec extra; timed with the jit budget).",
)
_WARMUP = flags.DEFINE_integer("warmup", 5, "Untimed jit calls per batch size before timing.")
_MIN_ITERATIONS = flags.DEFINE_integer("min_iterations", 50, "Fewest timed jit calls.")
_MIN_SECONDS = flags.DEFINE_float("min_seconds", 2.0, "Shortest jit timing per batch size (s).")
_MAX_SECONDS = flags.DEFINE_float(
    "max_seconds", 10.0, "Longest jit timing per batch size (s); overrides --min_iterations."
)
_EAGER_WARMUP = flags.DEFINE_integer("eager_warmup", 1, "Untimed eager calls per batch size.")
_EAGER_MIN_ITERATIONS = flags.DEFINE_integer("eager_min_iterations", 10, "Fewest eager calls.")
_EAGER_MAX_SECONDS = flags.DEFINE_float(
    "eager_max_seconds",
    5.0,
    "Time budget of eager timing per batch size (s): eager is slow, so it gets fewer calls.",
)
_THREADS = flags.DEFINE_integer(
    "threads",
    None,
    "XLA:CPU compute threads: sets PJRT_NPROC and pins the process to that many cores before "
    "the backend starts; default: XLA's own (one per usable core).",
    lower_bound=1,
)
_P99_TARGET_MS = flags.DEFINE_float(
    "p99_target_ms",
    None,
    "If set, report per mode the batch size of highest throughput whose p99 is at most this.",
)
_LOCALITY_LOOKUPS = flags.DEFINE_integer(
    "locality_lookups",
    locality.DEFAULT_SAMPLE_LOOKUPS,
    "The most lookups per sampled id stream for the locality figures (hot 1% share, LRU hit "
    "rate; 8 x the rows of the cache or the table are drawn when fewer): the LRU figure is the "
    "steady state's once the first half of the sample fills the simulated cache ('filled' in "
    "the table). 0 skips the locality figures.",
    lower_bound=0,
)
flags.register_validator(
    "p99_target_ms",
    lambda value: value is None or value > 0,
    message="--p99_target_ms must be a positive number of milliseconds.",
)

# Sharded runs (--processes > 1): see recjax.bench.sharded_latency.
_PROCESSES = flags.DEFINE_integer(
    "processes",
    1,
    "Processes to shard the tables over (jax.distributed); 1: the unsharded model only.",
    lower_bound=1,
)
_MESH = flags.DEFINE_string(
    "mesh",
    None,
    "Device mesh HOSTSxLOCAL, e.g. 2x2; its devices are split evenly over the processes "
    "(default: --processes x 1, one device per process).",
)
_PLAN = flags.DEFINE_enum(
    "plan",
    sharded_latency.AUTO_PLAN,
    list(sharded_latency.PLANS),
    "auto: the planner's (recjax.parallel.planner); else one sharding type for every table.",
)
_MEMORY_PER_PROCESS = flags.DEFINE_string(
    "memory_per_process",
    None,
    "The most table-shard bytes one process may hold, e.g. 64MiB (enforced before building); "
    "the planner plans within it.",
)
_COORDINATOR = flags.DEFINE_string(
    "coordinator",
    None,
    "HOST:PORT of process 0's coordinator, for processes on real hosts (with --process_id); "
    "locally the launcher picks one.",
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id",
    None,
    "This process's id in [0, --processes): run as one worker of a sharded group.",
    lower_bound=0,
)

flags.register_validator(
    "batch_sizes",
    shared.positive_integers,
    message="--batch_sizes must be a non-empty comma-separated list of positive integers.",
)
flags.register_validator(
    "modes",
    lambda modes: bool(modes) and set(modes) <= set(latency_sweep.MODES),
    message=f"--modes must be a non-empty comma-separated subset of {latency_sweep.MODES}.",
)


def _settings() -> latency_sweep.SweepSettings:
    return latency_sweep.SweepSettings(
        batch_sizes=tuple(int(value) for value in _BATCH_SIZES.value),
        modes=tuple(dict.fromkeys(_MODES.value)),
        seed=shared.SEED.value,
        jit_budget=TimingBudget(
            warmup=_WARMUP.value,
            min_iterations=_MIN_ITERATIONS.value,
            min_seconds=_MIN_SECONDS.value,
            max_seconds=_MAX_SECONDS.value,
        ),
        eager_budget=TimingBudget(
            warmup=_EAGER_WARMUP.value,
            min_iterations=_EAGER_MIN_ITERATIONS.value,
            min_seconds=0.0,
            max_seconds=_EAGER_MAX_SECONDS.value,
        ),
    )


def _sharded_settings() -> sharded_latency.ShardedSettings:
    try:
        hosts, local = (_PROCESSES.value, 1)
        if _MESH.value:
            hosts, local = (int(size) for size in _MESH.value.lower().split("x"))
        budget = None
        if _MEMORY_PER_PROCESS.value:
            budget = planner.parse_bytes(_MEMORY_PER_PROCESS.value)
        return sharded_latency.ShardedSettings(
            processes=_PROCESSES.value,
            mesh=MeshShape(hosts, local),
            batch_sizes=tuple(dict.fromkeys(int(value) for value in _BATCH_SIZES.value)),
            seed=shared.SEED.value,
            warmup=_WARMUP.value,
            iterations=_MIN_ITERATIONS.value,
            plan=_PLAN.value,
            memory_per_process=budget,
        )
    except ValueError as error:
        raise app.UsageError(f"--mesh, --memory_per_process or --batch_sizes: {error}") from error


def sharded_main() -> None:
    """--processes > 1: one worker of the group (--process_id), or the local launcher."""
    if flags.FLAGS["modes"].present and _MODES.value != ["jit"]:
        raise app.UsageError("--processes times the compiled (jit) model only; drop --modes.")
    settings = _sharded_settings()
    config = shared.model_config()
    if _PROCESS_ID.value is not None:
        if not _COORDINATOR.value or _PROCESS_ID.value >= settings.processes:
            raise app.UsageError(
                "A worker needs --coordinator=HOST:PORT and --process_id in [0, --processes)."
            )
        launch.initialize(
            _COORDINATOR.value, settings.processes, _PROCESS_ID.value, settings.devices_per_process
        )
        logdir = shared.LOGDIR.value
        if logdir is None and _PROCESS_ID.value == 0:
            logdir = RunReporter.start("latency", config, None, sys.argv).logdir
        sharded_latency.run_worker(config, settings, logdir)
        return
    if _COORDINATOR.value:
        raise app.UsageError("--coordinator is for workers on real hosts, with --process_id.")
    shared.start_on_cpu()
    try:
        reporter = RunReporter.start("latency", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error
    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    print(f"model:   {config.name}: {config.architecture_summary()}")
    print(f"         {config.table_bytes / 2**20:,.1f} MiB of tables", end="")
    if settings.memory_per_process is not None:
        over = "over" if config.table_bytes > settings.memory_per_process else "within"
        print(f", {over} the {settings.memory_per_process / 2**20:,.1f} MiB one process may hold")
    else:
        print()
    print(f"logdir:  {reporter.logdir}")
    print(f"timing:  {settings.warmup} untimed, then exactly {settings.iterations} timed calls")
    try:
        results = sharded_latency.run_launcher(
            config, settings, "benchmarks.latency", sys.argv[1:], reporter.logdir
        )
    except (launch.GroupFailed, planner.PlanError, MemoryBudgetError) as error:
        sys.exit(f"error: {error}")
    reporter.write_results({"settings": dataclasses.asdict(settings), **results})
    print()
    print(sharded_latency.format_table(results))
    reporter.print_paths()


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if _PROCESSES.value > 1 or _PROCESS_ID.value is not None:
        sharded_main()
        return
    if _THREADS.value is not None:
        try:
            cores = threads.limit_threads(_THREADS.value)
        except ValueError as error:
            raise app.UsageError(str(error)) from error
        print(f"threads: {_THREADS.value} (PJRT_NPROC={_THREADS.value}, pinned to cores {cores})")
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
    thread_counts = {"usable_cores": len(os.sched_getaffinity(0))}
    peers = [mode for mode in ("torch", "torchrec") if mode in settings.modes]
    if "torch" in settings.modes and not torch_twins.has_torch_twin(config):
        raise app.UsageError(f"--modes=torch: {config.name} has no PyTorch twin.")
    if "torchrec" in settings.modes and not torchrec_twins.has_torchrec_twin(config):
        raise app.UsageError(f"--modes=torchrec: {config.name} has no TorchRec twin.")
    if peers:
        if shared.HUGE_PAGES.value:
            # PyTorch's CPU allocator asks for huge pages when this is set before its first
            # allocation: both frameworks then hold their tables in 2 MiB pages.
            os.environ.setdefault(TORCH_HUGE_PAGES_VARIABLE, "1")
        try:
            torch_twins.require_torch()  # torch is an optional extra
            if "torchrec" in peers:
                torchrec_twins.require_torchrec()
        except ImportError as error:
            sys.exit(f"error: --modes={','.join(peers)}: {error}")
        thread_counts.update(torch_twins.set_torch_threads(thread_counts["usable_cores"]))
    # The peers hold float32 copies of the weights (torch: all of them; TorchRec: while it
    # quantizes its tables, beside their int8 copy, counted as one more float32 copy).
    float32_bytes = float32_config(config).parameter_bytes
    needed = shared.check_memory_or_exit(
        config,
        max(settings.batch_sizes),
        extra_bytes=float32_bytes * (int("torch" in peers) + 2 * int("torchrec" in peers)),
    )
    try:
        reporter = RunReporter.start("latency", config, shared.LOGDIR.value, sys.argv)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    print(f"machine: {fingerprint_summary(reporter.fingerprint)}")
    shared.print_model_header(config, needed, lowering, lowering_note)
    print(f"ids:     {shared.IDS.value}")
    print(f"logdir:  {reporter.logdir}")
    threads_line = f"threads: {thread_counts['usable_cores']} usable cores; XLA uses all of them"
    if "torch_num_threads" in thread_counts:
        threads_line += (
            f"; torch {thread_counts['torch_version']} "
            f"set_num_threads({thread_counts['torch_num_threads']}), "
            f"set_num_interop_threads({thread_counts['torch_num_interop_threads']})"
        )
    if "torchrec" in peers:
        thread_counts["fbgemm_gpu_cpu_version"] = torchrec_twins.fbgemm_version()
        thread_counts["torchrec_threads"] = torchrec_twins.THREAD_NOTE
        threads_line += (
            f"\n         fbgemm-gpu-cpu {thread_counts['fbgemm_gpu_cpu_version']}: "
            f"{torchrec_twins.THREAD_NOTE}"
        )
    print(threads_line)
    # Other processes on the same cores slow every mode (torch's OpenMP threads most): say so.
    load_average = {"start": os.getloadavg()[0]}
    print(f"load:    1-minute load average {load_average['start']:.2f} at the start")
    print(
        f"eager:   op by op under jax.disable_jit, at most {settings.eager_budget.max_seconds:g} s "
        f"per batch size, so fewer calls and a coarser p99 than jit"
    )
    if _CHECKPOINT.value:
        model, huge_pages = checkpoints.build_trained_model(
            config, _CHECKPOINT.value, shared.HUGE_PAGES.value
        )
    else:
        model, huge_pages = build_model(config, settings.seed, shared.HUGE_PAGES.value)

    measurements = latency_sweep.run_sweep(model, settings, ids=ids)
    table = latency_sweep.format_table(config, measurements)
    load_average["end"] = os.getloadavg()[0]
    cache_name, cache_bytes = last_level_cache(reporter.fingerprint)
    localities, locality_table = [], ""
    if _LOCALITY_LOOKUPS.value:
        localities = latency_sweep.measure_locality(
            config, settings, ids, cache_bytes, _LOCALITY_LOOKUPS.value
        )
        locality_table = locality.format_locality(
            localities,
            f"ids {shared.IDS.value}; LRU of the {cache_name}, {cache_bytes / 2**20:g} MiB, per "
            f"table alone; samples of at most {_LOCALITY_LOOKUPS.value:,} lookups",
        )
    best = None
    if _P99_TARGET_MS.value is not None:
        best = latency_bound.best_under_p99(measurements, _P99_TARGET_MS.value)
    reporter.write_results(
        {
            "embedding_lowering": lowering,
            "huge_pages": huge_pages,
            "checkpoint": _CHECKPOINT.value,
            "settings": dataclasses.asdict(settings),
            "thread_counts": thread_counts,
            "load_average_1min": load_average,
            "results": [m.to_json() for m in measurements],
            "threads": _THREADS.value,
            "latency_bound": best and latency_bound.to_json(best, _P99_TARGET_MS.value),
            "ids": shared.IDS.value,
            "id_distributions": id_distributions.describe(ids, config),
            "locality": {
                "cache": {"level": cache_name, "bytes": cache_bytes},
                "max_sample_lookups": _LOCALITY_LOOKUPS.value,
                "tables": [item.to_json() for item in localities],
            },
        }
    )
    with SummaryWriter(reporter.logdir) as writer:
        latency_sweep.write_summaries(
            writer,
            measurements,
            hparams={
                **latency_sweep.hparams_of(config, settings),
                "embedding_lowering": lowering,
                "ids": shared.IDS.value,
            },
            texts={"results": f"`{reporter.command}`\n\n```\n{table}\n\n{locality_table}\n```"},
            trial_id=os.path.basename(reporter.logdir),
        )
        locality.write_summaries(writer, localities)
        reporter.write_texts(writer)
        if best is not None:
            latency_bound.write_summaries(writer, best, _P99_TARGET_MS.value)
    print()
    print(table)
    print()
    if locality_table:
        print(locality_table)
        print()
    if best is not None:
        print(latency_bound.format_best(best, _P99_TARGET_MS.value))
    print(f"peak resident memory: {peak_resident_bytes() / GIB:.2f} GiB")
    start_load, end_load = load_average["start"], load_average["end"]
    print(f"load average: {start_load:.2f} at the start, {end_load:.2f} at the end")
    shared.draw_figures(reporter.logdir)
    reporter.print_paths()


if __name__ == "__main__":
    app.run(main)

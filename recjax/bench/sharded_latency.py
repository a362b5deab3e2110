"""Latency of a model sharded across processes, beside the unsharded model's, on the same batches.

Behind `benchmarks.latency --processes=N`. Two roles:

  worker    every process of the group (`run_worker`): joins the mesh, plans, builds only its own
            shards (refusing more than its memory budget), compiles each batch size, and times a
            fixed number of calls on batches it feeds slice by slice. The count is fixed, not
            timed, so that every process makes the same calls in the same order (a collective
            waits for all). Process 0 writes sharded.json and one batch's gathered predictions
            per batch size into the run folder.
  launcher  on one machine (`run_launcher`): starts the workers (`recjax.parallel.launch`), waits
            for all, then builds the unsharded model if this machine can hold it, times it on
            the same batches with the same counts, and compares its predictions with the
            sharded ones.

Each process reports the time of its own calls; they wait for one another in the collectives,
so process 0's times stand for the group's.
"""

import dataclasses
import json
import os
import sys
from collections.abc import Callable, Sequence

import jax
import numpy as np

from recjax.bench.timing import LatencyStats, TimingBudget, time_calls
from recjax.models.family import ModelConfig
from recjax.parallel import launch, planner, sharding
from recjax.parallel.layout import sharded_layout
from recjax.parallel.sharded_collection import MemoryBudgetError, device_mesh, process_devices
from recjax.parallel.sharded_model import (
    ShardedPredictor,
    gather_to_host,
    global_batch,
    host_batch,
    reference_model,
    shard_model,
)
from recjax.runtime.inference import CompiledPredictor
from recjax.runtime.memory import available_memory_bytes, estimated_peak_bytes, peak_resident_bytes

AUTO_PLAN = "auto"
PLANS = (AUTO_PLAN, *(kind.value for kind in sharding.ShardingType))
SHARDED_RESULTS = "sharded.json"
# Distinct batches per batch size, cycled through the timed calls.
NUM_BATCHES = 4
# With no budget given, the planner is told each device has this much memory.
UNLIMITED_BYTES = 2**50


@dataclasses.dataclass(frozen=True)
class ShardedSettings:
    """What a sharded latency run does.

    Attributes:
      processes: processes in the group.
      mesh: the (host, local) device mesh; its devices are split evenly over the processes.
      batch_sizes: global batch sizes, each a multiple of the mesh's device count.
      seed: seed of the parameters and of the batches.
      warmup: untimed calls per batch size.
      iterations: timed calls per batch size (the same in every process).
      plan: "auto" (the planner) or one sharding type for every table.
      memory_per_process: the most bytes of table shards one process may hold, or None.
    """

    processes: int
    mesh: sharding.MeshShape
    batch_sizes: tuple[int, ...]
    seed: int
    warmup: int
    iterations: int
    plan: str = AUTO_PLAN
    memory_per_process: int | None = None

    def __post_init__(self):
        if self.processes <= 0 or self.mesh.num_devices % self.processes:
            raise ValueError(
                f"The mesh's {self.mesh.num_devices} devices must split evenly over "
                f"{self.processes} processes."
            )
        bad = [size for size in self.batch_sizes if size <= 0 or size % self.mesh.num_devices]
        if not self.batch_sizes or bad:
            raise ValueError(
                f"Sharded batch sizes must be positive multiples of the mesh's "
                f"{self.mesh.num_devices} devices; got {list(self.batch_sizes)}."
            )
        if self.plan not in PLANS:
            raise ValueError(f"Unknown plan {self.plan!r}; expected one of {list(PLANS)}.")
        if self.iterations <= 0 or self.warmup < 0:
            raise ValueError(
                f"Need iterations >= 1 and warmup >= 0; got {self.iterations}, {self.warmup}."
            )

    @property
    def devices_per_process(self) -> int:
        return self.mesh.num_devices // self.processes

    @property
    def budget(self) -> TimingBudget:
        """Exactly `warmup` + `iterations` calls, never cut short by time."""
        return TimingBudget(
            warmup=self.warmup,
            min_iterations=self.iterations,
            max_iterations=self.iterations,
            min_seconds=0.0,
            max_seconds=1e9,
        )


def make_plan(config: ModelConfig, settings: ShardedSettings) -> planner.Planned | None:
    """The planner's plan for "auto" (told each device's share of the process budget), else
    None."""
    if settings.plan != AUTO_PLAN:
        return None
    memory = UNLIMITED_BYTES
    if settings.memory_per_process is not None:
        memory = settings.memory_per_process // settings.devices_per_process
    return planner.plan_tables(
        config.tables,
        config.features,
        batch_size=max(settings.batch_sizes),
        mesh=settings.mesh,
        memory_per_device=memory,
    )


def _plan(config: ModelConfig, settings: ShardedSettings) -> sharding.ShardingPlan:
    planned = make_plan(config, settings)
    if planned is not None:
        return planned.plan
    return sharding.uniform_plan(config.tables, settings.plan, settings.mesh)


def check_budget(config: ModelConfig, settings: ShardedSettings) -> int:
    """The bytes of table shards each process will hold (every device holds the same padded
    buffers); raises MemoryBudgetError if over the budget, planner.PlanError if no plan fits."""
    plan = _plan(config, settings)
    shard_layout = sharded_layout(plan, config.tables, config.features)
    per_process = shard_layout.device_bytes * settings.devices_per_process
    budget = settings.memory_per_process
    if budget is not None and per_process > budget:
        raise MemoryBudgetError(
            f"The {settings.plan} plan puts {per_process:,} bytes of table shards on each of the "
            f"{settings.processes} processes, over the budget of {budget:,} bytes by "
            f"{per_process - budget:,}."
        )
    return per_process


def _stats_json(latencies_s: np.ndarray) -> dict[str, object]:
    return {
        **dataclasses.asdict(LatencyStats.from_seconds(latencies_s)),
        "latencies_ms": [float(value) * 1e3 for value in latencies_s],
    }


def run_worker(
    config: ModelConfig,
    settings: ShardedSettings,
    outdir: str,
    progress: Callable[[str], None] = print,
) -> None:
    """One process's part of a sharded run (call after `launch.initialize`)."""
    me = jax.process_index()
    say = progress if me == 0 else (lambda message: None)
    mesh = device_mesh(settings.mesh)
    plan = _plan(config, settings)
    model = shard_model(config, plan, mesh, settings.seed, settings.memory_per_process)
    held = model.sparse_arch.process_bytes
    say(
        f"sharded: {settings.processes} processes, mesh {settings.mesh} "
        f"({len(process_devices(mesh))} device(s) per process), plan {settings.plan}; "
        f"process 0 holds {held / 2**20:.1f} MiB of table shards"
    )
    predictor = ShardedPredictor(model, mesh)
    results = []
    for batch_size in settings.batch_sizes:
        compile_seconds = predictor.compile(batch_size)
        batches = [
            global_batch(config, batch_size, settings.seed + index, mesh)
            for index in range(NUM_BATCHES)
        ]
        predictions, valid = predictor(batches[0])
        gathered = gather_to_host(predictions)
        if me == 0:
            np.savez(os.path.join(outdir, f"predictions_b{batch_size}.npz"), **gathered)
        calls = iter(range(10**9))
        latencies = time_calls(
            lambda calls=calls, batches=batches: predictor(batches[next(calls) % NUM_BATCHES]),
            settings.budget,
        )
        say(
            f"  batch {batch_size}: compiled in {compile_seconds:.1f} s, p50 "
            f"{np.percentile(latencies, 50) * 1e3:.3f} ms"
        )
        results.append(
            {
                "batch_size": batch_size,
                "compile_seconds": compile_seconds,
                "inputs_valid": bool(valid),
                **_stats_json(latencies),
            }
        )
    from jax.experimental import multihost_utils

    per_process = multihost_utils.process_allgather(
        np.asarray([held, peak_resident_bytes()], np.int64)
    )
    if me == 0:
        out = {
            "processes": settings.processes,
            "mesh": str(settings.mesh),
            "plan": settings.plan,
            "sharding": [
                {
                    "table": p.table,
                    "sharding": p.sharding.value,
                    "devices": [s.device for s in p.shards],
                }
                for p in plan.tables
            ],
            "memory_per_process": settings.memory_per_process,
            "table_bytes_per_process": [int(row[0]) for row in per_process],
            "peak_resident_bytes_per_process": [int(row[1]) for row in per_process],
            "results": results,
        }
        with open(os.path.join(outdir, SHARDED_RESULTS), "w") as file:
            json.dump(out, file, indent=1)


def worker_command(
    module: str, args: Sequence[str], process_id: int, coordinator: str, logdir: str
) -> list[str]:
    """The command line of one worker: the binary's own arguments, with the group's."""
    own = ("--process_id", "--coordinator", "--logdir")
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg in own:
            skip = True
            continue
        if arg.startswith(tuple(f"{name}=" for name in own)):
            continue
        kept.append(arg)
    return [
        sys.executable,
        "-m",
        module,
        *kept,
        f"--process_id={process_id}",
        f"--coordinator={coordinator}",
        f"--logdir={logdir}",
    ]


def run_launcher(
    config: ModelConfig,
    settings: ShardedSettings,
    module: str,
    args: Sequence[str],
    logdir: str,
    progress: Callable[[str], None] = print,
) -> dict[str, object]:
    """Runs the workers on this machine, then the unsharded model where it fits; the results.

    Raises launch.GroupFailed if a worker fails (all are stopped), and before starting any,
    MemoryBudgetError or planner.PlanError if the shards cannot fit.
    """
    per_process = check_budget(config, settings)
    progress(f"plan:    {per_process / 2**20:,.1f} MiB of table shards per process")
    launch.launch_local(
        lambda k, coordinator: worker_command(module, args, k, coordinator, logdir),
        settings.processes,
        os.path.join(logdir, "processes"),
    )
    with open(os.path.join(logdir, SHARDED_RESULTS)) as file:
        sharded = json.load(file)
    needed = estimated_peak_bytes(config, max(settings.batch_sizes))
    available = available_memory_bytes()
    unsharded: dict[str, object] = {"needed_bytes": needed, "available_bytes": available}
    if needed > available:
        unsharded["skipped"] = (
            f"the unsharded model needs about {needed / 2**30:.1f} GiB; "
            f"{available / 2**30:.1f} GiB are available"
        )
        progress(f"unsharded: skipped: {unsharded['skipped']}")
        return {"sharded": sharded, "unsharded": unsharded}
    progress("unsharded: building the whole model in this process, on the same batches")
    predictor = CompiledPredictor(reference_model(config, settings.seed))
    rows = []
    num_devices = settings.mesh.num_devices
    for batch_size in settings.batch_sizes:
        compile_seconds = predictor.compile(batch_size)
        batches = [
            jax.device_put(host_batch(config, batch_size, settings.seed + index, num_devices))
            for index in range(NUM_BATCHES)
        ]
        expected = predictor(batches[0])
        with np.load(os.path.join(logdir, f"predictions_b{batch_size}.npz")) as saved:
            difference = max(
                float(np.abs(saved[head] - np.asarray(expected[head])).max()) for head in expected
            )
        calls = iter(range(10**9))
        latencies = time_calls(
            lambda calls=calls, batches=batches: predictor(batches[next(calls) % NUM_BATCHES]),
            settings.budget,
        )
        rows.append(
            {
                "batch_size": batch_size,
                "compile_seconds": compile_seconds,
                "max_abs_difference_from_sharded": difference,
                **_stats_json(latencies),
            }
        )
    unsharded["results"] = rows
    return {"sharded": sharded, "unsharded": unsharded}


def format_table(results: dict[str, object]) -> str:
    """Sharded and unsharded p50/p99 per batch size, side by side."""
    sharded = results["sharded"]
    unsharded = {row["batch_size"]: row for row in results["unsharded"].get("results", [])}
    label = f"sharded ({sharded['processes']} processes, mesh {sharded['mesh']}, {sharded['plan']})"
    width = max(len(label), len("unsharded (1 process)"))
    lines = [
        f"{'batch':>6}  {'model':<{width}}  {'p50 ms':>9} {'p99 ms':>9} {'samples/s':>11} "
        f"{'compile s':>9}  max |sharded - unsharded|"
    ]
    for row in sharded["results"]:
        size = row["batch_size"]
        rate = size / (row["mean_ms"] / 1e3)
        lines.append(
            f"{size:>6}  {label:<{width}}  {row['p50_ms']:>9.3f} {row['p99_ms']:>9.3f} "
            f"{rate:>11,.0f} {row['compile_seconds']:>9.1f}"
        )
        if size in unsharded:
            other = unsharded[size]
            rate = size / (other["mean_ms"] / 1e3)
            lines.append(
                f"{'':>6}  {'unsharded (1 process)':<{width}}  {other['p50_ms']:>9.3f} "
                f"{other['p99_ms']:>9.3f} {rate:>11,.0f} {other['compile_seconds']:>9.1f}  "
                f"{other['max_abs_difference_from_sharded']:.2e}"
            )
    if "skipped" in results["unsharded"]:
        lines.append(f"unsharded: skipped: {results['unsharded']['skipped']}")
    return "\n".join(lines)

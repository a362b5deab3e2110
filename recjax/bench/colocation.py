"""Co-location: N independent inference processes at once, each with its own model and batches.

Each instance is a process started with `spawn` (a fresh interpreter: no JAX state is inherited).
It pins itself to its cores and sizes XLA's thread pool to them before JAX starts, builds its own
model (any family, through `config.build`), compiles and warms up on synthetic inputs, reports
ready and waits; once every instance is ready, all start together and each times its own calls for
the same duration. Each instance gets its own cores (by default the usable cores split evenly, or
a fixed number each) while there are enough; beyond, instances share cores round robin and the
run is marked oversubscribed (`plan_cores`).

Processes are always cleaned up: an instance that fails (an exception, or an exit without a
result) stops the others and raises `InstanceFailedError` naming it; so does a timeout, and so
does Ctrl-C in the parent (which re-raises KeyboardInterrupt after the cleanup). Every instance
also asks the kernel to kill it if the parent dies (PR_SET_PDEATHSIG), so none outlives it.
"""

import contextlib
import ctypes
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import traceback
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from recjax.bench.timing import LatencyStats, TimingBudget
from recjax.inputs.id_distributions import IdDistribution
from recjax.models.family import ModelConfig
from recjax.runtime.memory import (
    GIB,
    InsufficientMemoryError,
    available_memory_bytes,
    estimated_peak_bytes,
    sharding_note,
)

# Seconds an instance may take to build its model, compile and warm up (full presets: tens).
READY_TIMEOUT_S = 600.0
# Seconds, beyond the timed duration, an instance may take to send its results.
RESULT_MARGIN_S = 120.0
# Seconds a stopped instance gets to exit after SIGTERM, before SIGKILL.
TERMINATE_GRACE_S = 5.0
WARMUP_CALLS = 3
PR_SET_PDEATHSIG = 1
# Row scales offered, largest first, when N copies of a preset do not fit in memory.
SUGGESTED_ROW_SCALES = (0.5, 0.25, 0.1, 0.05, 0.01)


class InstanceFailedError(RuntimeError):
    """An instance failed, died or timed out; every instance has been stopped."""


def plan_cores(
    instances: int, usable_cores: Sequence[int], cores_per_instance: int | None = None
) -> tuple[list[list[int]], bool]:
    """The cores of each instance, and whether instances share cores (oversubscribed).

    Without `cores_per_instance`, the cores are split evenly: with at least as many cores as
    instances, each gets its own len(cores) // instances cores (leftover cores stay idle, so every
    instance has the same share); with fewer, each gets one core, round robin. With
    `cores_per_instance` = C, each gets C cores: disjoint while instances * C cores suffice, round
    robin (shared) beyond.
    """
    cores = sorted(usable_cores)
    if instances < 1 or not cores:
        raise ValueError(f"Need instances >= 1 and some cores; got {instances}, {cores}.")
    if cores_per_instance is None:
        cores_per_instance = max(1, len(cores) // instances)
    if not 1 <= cores_per_instance <= len(cores):
        raise ValueError(
            f"cores_per_instance must be between 1 and the {len(cores)} usable cores; got "
            f"{cores_per_instance}."
        )
    plan = [
        [cores[(i * cores_per_instance + j) % len(cores)] for j in range(cores_per_instance)]
        for i in range(instances)
    ]
    return plan, instances * cores_per_instance > len(cores)


def scale_rows(config: ModelConfig, rows_scale: float) -> ModelConfig:
    """`config` with every table's rows scaled by `rows_scale` (at least one row each).

    Works for any family: only `config.tables` change (dims, dtypes, features and the rest of
    the architecture are kept). The name gets a suffix, e.g. "rmc2-rows0.25", so results never
    pass for the full preset's. A scale of 1 returns `config` unchanged.
    """
    if not 0 < rows_scale <= 1:
        raise ValueError(f"rows_scale must be in (0, 1]; got {rows_scale}.")
    if rows_scale == 1:
        return config
    tables = tuple(
        dataclasses.replace(table, num_rows=max(1, round(table.num_rows * rows_scale)))
        for table in config.tables
    )
    return dataclasses.replace(config, name=f"{config.name}-rows{rows_scale:g}", tables=tables)


def check_memory(
    config: ModelConfig,
    instances: int,
    batch_size: int,
    available_bytes: int | None = None,
    smaller_presets: Sequence[str] = (),
) -> int:
    """Bytes that `instances` copies need; raises InsufficientMemoryError naming a --rows_scale
    (and, where not even one instance fits, the `smaller_presets`, and sharding where its
    parameters alone cannot fit).

    Each instance holds its own parameters: N times `recjax.runtime.memory.estimated_peak_bytes`.
    """
    needed = instances * estimated_peak_bytes(config, batch_size)
    available = available_memory_bytes() if available_bytes is None else available_bytes
    if needed <= available:
        return needed
    fitting = [
        scale
        for scale in SUGGESTED_ROW_SCALES
        if instances * estimated_peak_bytes(scale_rows(config, scale), batch_size) <= available
    ]
    suggestion = (
        f" Scale the tables' rows with --rows_scale={fitting[0]:g} (or less), which fits."
        if fitting
        else " Even a hundredth of the rows does not fit; use fewer instances."
    )
    if smaller_presets and estimated_peak_bytes(config, batch_size) > available:
        suggestion += (
            f" Not even one instance fits; try a smaller preset: {', '.join(smaller_presets)}."
        )
    raise InsufficientMemoryError(
        f"{instances} instances of {config.name} need about {needed / GIB:.1f} GiB "
        f"({estimated_peak_bytes(config, batch_size) / GIB:.1f} GiB each), but only "
        f"{available / GIB:.1f} GiB of memory is available."
        f"{suggestion}{sharding_note(config, available)}"
    )


@dataclasses.dataclass(frozen=True)
class InstanceSpec:
    """What one instance runs: a model, a batch size, for how long, on which cores.

    `huge_pages`: move the model's tables into 2 MiB pages (`recjax.runtime.model_setup`).
    """

    index: int
    config: ModelConfig
    batch_size: int
    duration_s: float
    cores: tuple[int, ...]
    seed: int
    huge_pages: bool = True
    ids: Mapping[str, IdDistribution] | None = None  # each table's id distribution; uniform


@dataclasses.dataclass(frozen=True)
class InstanceResult:
    spec: InstanceSpec
    pid: int
    latencies_s: np.ndarray
    fingerprint: dict[str, object]

    @property
    def stats(self) -> LatencyStats:
        return LatencyStats.from_seconds(self.latencies_s)

    @property
    def throughput_samples_per_s(self) -> float:
        return self.spec.batch_size / float(np.mean(self.latencies_s))


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _instance_main(spec: InstanceSpec, connection) -> None:
    """The body of one instance process (runs in a spawned interpreter).

    Talks to the parent over its own pipe only (no lock shared with other instances, so an
    instance killed at any moment cannot block the others): sends ("ready", fingerprint), waits
    for the parent's go, sends ("result", latencies); or ("error", traceback) on any failure.
    """
    _die_with_parent()
    try:
        from recjax.runtime import threads

        threads.pin_threads(list(spec.cores))
        import jax

        from recjax.bench.timing import time_calls
        from recjax.inputs.synthetic import synthetic_features, to_device
        from recjax.reporting.fingerprint import machine_fingerprint
        from recjax.runtime.inference import CompiledPredictor
        from recjax.runtime.model_setup import build_model

        jax.config.update("jax_platforms", "cpu")
        model, _ = build_model(
            spec.config, spec.seed + spec.index, spec.huge_pages, progress=lambda _: None
        )
        predictor = CompiledPredictor(model, [spec.batch_size])
        batch = to_device(
            synthetic_features(
                spec.config, spec.batch_size, seed=spec.seed + 1000 * spec.index, ids=spec.ids
            )
        )
        for _ in range(WARMUP_CALLS):
            predictor(batch)
        connection.send(("ready", machine_fingerprint()))
        connection.recv()  # the go: every instance is ready
        budget = TimingBudget(
            warmup=0,
            min_iterations=1,
            max_iterations=10**9,
            min_seconds=spec.duration_s,
            max_seconds=spec.duration_s,
        )
        latencies = time_calls(lambda: predictor(batch), budget)
        connection.send(("result", latencies))
    except BaseException:  # noqa: BLE001 - any failure, Ctrl-C included, goes to the parent
        with contextlib.suppress(OSError):  # unless the parent is gone
            connection.send(("error", traceback.format_exc()))
        raise


def _stop(processes: list) -> None:
    """SIGTERM every live process, then SIGKILL what is left after the grace period; reap all."""
    processes = [process for process in processes if process.pid is not None]  # started ones
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + TERMINATE_GRACE_S
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
        if process.is_alive():
            process.kill()
            process.join()


def _collect(
    connections: list, processes: list, kind: str, timeout_s: float, what: str
) -> dict[int, object]:
    """Waits for a `kind` message from every instance; raises InstanceFailedError otherwise."""
    pending = set(range(len(processes)))
    payloads = {}
    deadline = time.monotonic() + timeout_s
    while pending:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InstanceFailedError(
                f"instances {sorted(pending)} did not finish {what} within {timeout_s:.0f} s."
            )
        waitables = [connections[i] for i in pending] + [processes[i].sentinel for i in pending]
        ready = multiprocessing.connection.wait(waitables, timeout=min(remaining, 1.0))
        for index in sorted(pending):
            connection, process = connections[index], processes[index]
            if connection not in ready and process.sentinel not in ready:
                continue
            try:
                if not connection.poll():
                    raise EOFError
                message_kind, payload = connection.recv()
            except (EOFError, OSError):
                process.join(TERMINATE_GRACE_S)
                raise InstanceFailedError(
                    f"instance {index} (pid {process.pid}) exited with code {process.exitcode} "
                    f"before {what}."
                ) from None
            if message_kind == "error":
                raise InstanceFailedError(
                    f"instance {index} (pid {process.pid}) failed {what}:\n{payload}"
                )
            if message_kind == kind:
                pending.discard(index)
                payloads[index] = payload
    return payloads


def run_instances(
    specs: Sequence[InstanceSpec],
    progress: Callable[[str], None] = print,
) -> list[InstanceResult]:
    """Runs one process per spec at once; returns their timed calls, in spec order.

    Raises InstanceFailedError if any instance fails; no process is left running either way.
    """
    context = multiprocessing.get_context("spawn")
    pipes = [context.Pipe() for _ in specs]
    processes = [
        context.Process(
            target=_instance_main,
            args=(spec, child_end),
            name=f"recjax-colocation-{spec.index}",
            daemon=True,
        )
        for spec, (_, child_end) in zip(specs, pipes, strict=True)
    ]
    connections = [parent_end for parent_end, _ in pipes]
    try:
        for spec, process, (_, child_end) in zip(specs, processes, pipes, strict=True):
            process.start()
            child_end.close()  # the child holds its own copy; EOF here means the child is gone
            progress(f"  instance {spec.index}: pid {process.pid}, cores {list(spec.cores)}")
        fingerprints = _collect(
            connections, processes, "ready", READY_TIMEOUT_S, "building its model"
        )
        duration = max(spec.duration_s for spec in specs)
        progress(f"  all {len(specs)} ready; timing for {duration:g} s")
        for connection in connections:
            with contextlib.suppress(OSError):  # a dead instance: collecting will say so
                connection.send("go")
        latencies = _collect(
            connections, processes, "result", duration + RESULT_MARGIN_S, "the timed calls"
        )
    finally:
        _stop(processes)
        for connection in connections:
            connection.close()
    return [
        InstanceResult(
            spec, process.pid, np.asarray(latencies[spec.index]), fingerprints[spec.index]
        )
        for spec, process in zip(specs, processes, strict=True)
    ]


@dataclasses.dataclass(frozen=True)
class ColocationRun:
    """The instances of one N, run at once."""

    instances: int
    oversubscribed: bool
    results: list[InstanceResult]

    @property
    def aggregate_throughput_samples_per_s(self) -> float:
        return sum(result.throughput_samples_per_s for result in self.results)


def run_colocation(
    config: ModelConfig,
    instance_counts: Sequence[int],
    batch_size: int,
    duration_s: float,
    seed: int,
    usable_cores: Sequence[int],
    cores_per_instance: int | None = None,
    huge_pages: bool = True,
    progress: Callable[[str], None] = print,
    ids: Mapping[str, IdDistribution] | None = None,
) -> list[ColocationRun]:
    """For each N in `instance_counts`, runs N instances at once, one N after another."""
    runs = []
    for count in instance_counts:
        core_sets, oversubscribed = plan_cores(count, usable_cores, cores_per_instance)
        shared = " (oversubscribed: instances share cores)" if oversubscribed else ""
        progress(f"N={count}: starting {count} instance(s) of {config.name}{shared}")
        specs = [
            InstanceSpec(index, config, batch_size, duration_s, tuple(cores), seed, huge_pages, ids)
            for index, cores in enumerate(core_sets)
        ]
        results = run_instances(specs, progress)
        runs.append(ColocationRun(count, oversubscribed, results))
    return runs


def slowdowns(runs: Sequence[ColocationRun]) -> dict[tuple[int, int], tuple[float, float]]:
    """(p50, p99) of each (N, instance) over those of the N=1 run; empty without an N=1 run."""
    baseline = next((run for run in runs if run.instances == 1), None)
    if baseline is None:
        return {}
    base = baseline.results[0].stats
    return {
        (run.instances, result.spec.index): (
            result.stats.p50_ms / base.p50_ms,
            result.stats.p99_ms / base.p99_ms,
        )
        for run in runs
        for result in run.results
    }


def format_table(title: str, runs: Sequence[ColocationRun]) -> str:
    """One row per (N, instance), then one aggregate row per N."""
    slowdown = slowdowns(runs)
    header = (
        f"{'N':>3}{'instance':>10}{'cores':>8}{'p50 ms':>10}{'p99 ms':>10}{'calls':>8}"
        f"{'samples/s':>12}{'slowdown p50':>14}{'slowdown p99':>14}"
    )
    lines = [title, header, "-" * len(header)]
    for run in runs:
        for result in run.results:
            s = result.stats
            p50_slowdown, p99_slowdown = slowdown.get(
                (run.instances, result.spec.index), (float("nan"), float("nan"))
            )
            cores = ",".join(map(str, result.spec.cores))
            lines.append(
                f"{run.instances:>3}{result.spec.index:>10}{cores:>8}{s.p50_ms:>10.3f}"
                f"{s.p99_ms:>10.3f}{s.iterations:>8}{result.throughput_samples_per_s:>12,.0f}"
                f"{p50_slowdown:>13.2f}x{p99_slowdown:>13.2f}x"
            )
        shared = "  (oversubscribed)" if run.oversubscribed else ""
        lines.append(
            f"{run.instances:>3}{'all':>10}{'':>8}{'':>10}{'':>10}{'':>8}"
            f"{run.aggregate_throughput_samples_per_s:>12,.0f}{shared}"
        )
    return "\n".join(lines)


def _result_json(result: InstanceResult, slowdown: tuple[float, float] | None) -> dict:
    return {
        "index": result.spec.index,
        "pid": result.pid,
        "cores": list(result.spec.cores),
        **dataclasses.asdict(result.stats),
        "throughput_samples_per_s": result.throughput_samples_per_s,
        "fingerprint": result.fingerprint,
        "slowdown_p50": slowdown[0] if slowdown else None,
        "slowdown_p99": slowdown[1] if slowdown else None,
        "latencies_ms": [round(value * 1e3, 6) for value in result.latencies_s.tolist()],
    }


def to_json(runs: Sequence[ColocationRun]) -> list[dict[str, object]]:
    slowdown = slowdowns(runs)
    return [
        {
            "instances": run.instances,
            "oversubscribed": run.oversubscribed,
            "aggregate_throughput_samples_per_s": run.aggregate_throughput_samples_per_s,
            "per_instance": [
                _result_json(result, slowdown.get((run.instances, result.spec.index)))
                for result in run.results
            ],
        }
        for run in runs
    ]


def write_summaries(writer, runs: Sequence[ColocationRun]) -> None:
    """Scalars with N (the instance count) as the step; per-instance latency histograms."""
    slowdown = slowdowns(runs)
    for run in runs:
        step = run.instances
        writer.scalar(
            "aggregate/throughput_samples_per_s", run.aggregate_throughput_samples_per_s, step
        )
        writer.scalar("aggregate/oversubscribed", float(run.oversubscribed), step)
        stats = [result.stats for result in run.results]
        writer.scalar(
            "latency_ms/p50_mean_over_instances", np.mean([s.p50_ms for s in stats]), step
        )
        writer.scalar("latency_ms/p99_max_over_instances", max(s.p99_ms for s in stats), step)
        ratios = [slowdown[(run.instances, r.spec.index)] for r in run.results if slowdown]
        if ratios:
            writer.scalar("slowdown/p50_mean_over_instances", np.mean([r[0] for r in ratios]), step)
            writer.scalar("slowdown/p99_max_over_instances", max(r[1] for r in ratios), step)
        for result in run.results:
            writer.histogram(
                f"instance_{result.spec.index}/latency_ms", result.latencies_s * 1e3, step
            )
    writer.flush()

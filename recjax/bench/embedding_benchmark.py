"""The embedding-bag microbenchmark behind `benchmarks.embedding`.

Times a preset's embedding bags alone, per lowering and batch size, on the preset's full tables,
against the machine's gather ceiling measured on the very same table memory in the same run, and
against `torch.nn.EmbeddingBag` (one per table, sharing that memory) when torch is installed.

Ids are uniform over each table's rows. Timed calls rotate through several distinct batches, so
that the rows of one call are not still in the cache from the previous call: a single repeated
batch of rmc2 at batch 16 (16 MB of rows) would otherwise fit in a 32 MB last-level cache.
"""

import dataclasses
import itertools
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from recjax.bench.ceilings import GB, Ceiling
from recjax.bench.timing import LatencyStats, TimingBudget, time_calls
from recjax.inputs.data import synthetic_batch
from recjax.layers.embedding_bag import LOWERINGS, EmbeddingBagCollection
from recjax.models.dlrm import DLRMConfig

TORCH = "torch"


@dataclasses.dataclass(frozen=True)
class EmbeddingMeasurement:
    """The timed calls of one implementation (a lowering, or torch) at one batch size."""

    implementation: str
    batch_size: int
    latencies_s: np.ndarray
    gathered_bytes_per_call: int
    max_abs_difference: float

    @property
    def stats(self) -> LatencyStats:
        return LatencyStats.from_seconds(self.latencies_s)

    @property
    def gigabytes_per_s(self) -> float:
        """Gathered bytes per second at the median latency."""
        return self.gathered_bytes_per_call / np.median(self.latencies_s) / GB

    def to_json(self, ceiling: Ceiling, row_bytes: int) -> dict[str, object]:
        return {
            "implementation": self.implementation,
            "batch_size": self.batch_size,
            **dataclasses.asdict(self.stats),
            "gigabytes_per_s": self.gigabytes_per_s,
            "rows_per_s": self.gigabytes_per_s * GB / row_bytes,
            "percent_of_ceiling": 100 * self.gigabytes_per_s / ceiling.median,
            "max_abs_difference": self.max_abs_difference,
            "latencies_ms": [round(v * 1e3, 6) for v in self.latencies_s.tolist()],
        }


def torch_available() -> tuple[bool, str]:
    try:
        import torch
    except ImportError:
        return False, "torch is not installed; install it with `pip install -e '.[torch]'`"
    return True, f"torch {torch.__version__}"


def rotation_count(config: DLRMConfig, batch_size: int, rotate_bytes: int) -> int:
    """How many distinct batches hold at least `rotate_bytes` of rows together (1 to 64)."""
    per_batch = batch_size * config.embedding_bytes_per_sample
    return int(np.clip(np.ceil(rotate_bytes / per_batch), 1, 64))


def _jax_implementation(lowering: str, bags: EmbeddingBagCollection) -> Callable:
    offsets = jnp.asarray(bags.row_offsets, jnp.int32)[None, :, None]
    pool = LOWERINGS[lowering]
    return jax.jit(lambda stacked, ids: pool(stacked, ids + offsets))


def _torch_implementation(bags: EmbeddingBagCollection, threads: int) -> Callable:
    """One nn.EmbeddingBag(mode="sum") per table, as PyTorch users write it, viewing the tables."""
    import torch

    torch.set_num_threads(threads)
    stacked = torch.from_dlpack(bags.weight[...])  # shares the JAX buffer: no copy
    tables = [
        torch.nn.EmbeddingBag.from_pretrained(stacked[start : start + rows], mode="sum")
        for start, rows in zip(bags.row_offsets, bags.num_rows, strict=True)
    ]

    def pool(per_table_ids: list) -> object:
        with torch.inference_mode():
            pooled = [bag(ids) for bag, ids in zip(tables, per_table_ids, strict=True)]
            return torch.stack(pooled, dim=1)

    return pool


def run_embedding_benchmark(
    config: DLRMConfig,
    bags: EmbeddingBagCollection,
    batch_sizes: tuple[int, ...],
    implementations: tuple[str, ...],
    budget: TimingBudget,
    rotate_bytes: int,
    seed: int,
    progress: Callable[[str], None] = print,
) -> list[EmbeddingMeasurement]:
    """Times every implementation at every batch size on the same rotated batches."""
    threads = len(os.sched_getaffinity(0))
    compiled = {name: _jax_implementation(name, bags) for name in implementations if name != TORCH}
    torch_pool = _torch_implementation(bags, threads) if TORCH in implementations else None
    stacked = bags.weight[...]
    measurements = []
    for batch_size in batch_sizes:
        count = rotation_count(config, batch_size, rotate_bytes)
        host_ids = [
            synthetic_batch(config, batch_size, seed=seed + 1000 * batch_size + i).sparse_ids
            for i in range(count)
        ]
        device_ids = [jax.device_put(ids) for ids in host_ids]
        reference = None
        for name in implementations:
            label = f"{config.name} {name:<12} batch {batch_size:>5}"
            progress(f"{label}: timing over {count} distinct batch(es) ...")
            if name == TORCH:
                import torch

                per_table = [
                    [
                        torch.from_numpy(np.ascontiguousarray(ids[:, t, :]))
                        for t in range(ids.shape[1])
                    ]
                    for ids in host_ids
                ]
                output = torch_pool(per_table[0]).numpy()
                batches = itertools.cycle(per_table)
                latencies = time_calls(lambda: torch_pool(next(batches)), budget)  # noqa: B023
            else:
                executable = compiled[name].lower(stacked, device_ids[0]).compile()
                output = np.asarray(executable(stacked, device_ids[0]))
                batches = itertools.cycle(device_ids)
                latencies = time_calls(lambda: executable(stacked, next(batches)), budget)  # noqa: B023
            if reference is None:
                reference = output
            measurement = EmbeddingMeasurement(
                implementation=name,
                batch_size=batch_size,
                latencies_s=latencies,
                gathered_bytes_per_call=batch_size * config.embedding_bytes_per_sample,
                max_abs_difference=float(np.max(np.abs(output - reference))),
            )
            measurements.append(measurement)
            progress(
                f"{label}: p50 {measurement.stats.p50_ms:.3f} ms, "
                f"{measurement.gigabytes_per_s:.1f} GB/s"
            )
    return measurements


def format_table(measurements: list[EmbeddingMeasurement], ceiling: Ceiling, row_bytes: int) -> str:
    header = (
        f"{'implementation':<14}{'batch':>6}{'p50 ms':>10}{'p99 ms':>10}{'GB/s':>8}"
        f"{'M rows/s':>10}{'% ceiling':>11}{'calls':>7}"
    )
    lines = [
        f"gather ceiling: {ceiling.median:.1f} GB/s median, {ceiling.best:.1f} best "
        f"({ceiling.threads} threads, {ceiling.detail}, on the preset's own tables)",
        header,
        "-" * len(header),
    ]
    for m in sorted(measurements, key=lambda m: (m.implementation, m.batch_size)):
        row = m.to_json(ceiling, row_bytes)
        lines.append(
            f"{m.implementation:<14}{m.batch_size:>6}{m.stats.p50_ms:>10.3f}{m.stats.p99_ms:>10.3f}"
            f"{m.gigabytes_per_s:>8.1f}{row['rows_per_s'] / 1e6:>10.1f}"
            f"{row['percent_of_ceiling']:>10.0f}%{m.stats.iterations:>7}"
        )
    return "\n".join(lines)

"""The embedding microbenchmark behind `benchmarks.embedding`, for a model of any family.

Times a model's embedding lookups alone (its `EmbeddingCollection`, `model.sparse_arch`, on
`Features` batches), per lowering and batch size, on the model's full tables, against the
machine's gather ceiling measured on the very same table memory in the same run, and against
`torch.nn.EmbeddingBag` (one per feature, sharing that memory) when torch is installed and every
feature is a bag that nn.EmbeddingBag's plain form computes (sum-pooled, fixed-length,
unweighted).

Bytes gathered per call count every feature at full capacity: B x sum_k C_k x row bytes of its
table (`config.embedding_bytes_per_sample`); rows per call are B x sum_k C_k. The gather ceiling
is measured on the largest table group (the stacked [N, D] buffer of most bytes), so its row size
is that group's.

Ids are uniform over each table's rows unless `ids` gives a table another distribution. Timed
calls rotate through several distinct batches, so that the rows of one call are not still in the
cache from the previous call: a single repeated batch of rmc2 at batch 16 (16 MB of rows) would
otherwise fit in a 32 MB last-level cache.
"""

import dataclasses
import itertools
from collections.abc import Callable, Mapping

import jax
import numpy as np
from flax import nnx

from recjax import native
from recjax.bench.ceilings import GB, Ceiling, gather_ceiling, usable_cores
from recjax.bench.timing import LatencyStats, TimingBudget, time_calls
from recjax.inputs.features import FeatureConfig, Features
from recjax.inputs.id_distributions import IdDistribution
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.layers.embedding_bag import LOWERINGS
from recjax.layers.embedding_collection import EmbeddingCollection
from recjax.models.family import ModelConfig

TORCH = "torch"
IMPLEMENTATIONS = (*sorted(LOWERINGS), TORCH)

# Distinct batches a timed case rotates through, at most.
MAX_ROTATION = 64

Lookups = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class EmbeddingMeasurement:
    """The timed calls of one implementation (a lowering, or torch) at one batch size."""

    implementation: str
    batch_size: int
    latencies_s: np.ndarray
    gathered_bytes_per_call: int
    rows_per_call: int
    max_abs_difference: float

    @property
    def stats(self) -> LatencyStats:
        return LatencyStats.from_seconds(self.latencies_s)

    @property
    def gigabytes_per_s(self) -> float:
        """Gathered bytes per second at the median latency."""
        return self.gathered_bytes_per_call / np.median(self.latencies_s) / GB

    @property
    def rows_per_s(self) -> float:
        """Looked-up rows per second at the median latency."""
        return self.rows_per_call / np.median(self.latencies_s)

    def to_json(self, ceiling: Ceiling) -> dict[str, object]:
        return {
            "implementation": self.implementation,
            "batch_size": self.batch_size,
            **dataclasses.asdict(self.stats),
            "gathered_bytes_per_call": self.gathered_bytes_per_call,
            "rows_per_call": self.rows_per_call,
            "gigabytes_per_s": self.gigabytes_per_s,
            "rows_per_s": self.rows_per_s,
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


def _torch_unsupported(feature: FeatureConfig) -> str | None:
    """Why nn.EmbeddingBag(mode="sum") on [B, C] ids does not compute `feature`, or None."""
    reasons = []
    if feature.pooling != "sum":
        reasons.append(f"pooling {feature.pooling!r}")
    if not feature.fixed_length:
        reasons.append("variable length")
    if feature.weighted:
        reasons.append("weighted")
    return ", ".join(reasons) if reasons else None


def torch_supports(config: ModelConfig) -> tuple[bool, str]:
    """Whether the torch comparison can run on `config`'s features, and why not if it cannot.

    The comparison is one nn.EmbeddingBag(mode="sum") per feature on [B, C] ids, viewing the
    model's float32 tables: it computes only sum-pooled, fixed-length, unweighted bags over float32
    tables, and it times all of the model's features or none (a subset would gather other bytes
    than the lowerings it is compared with).
    """
    stored = sorted({table.dtype for table in config.tables} - {"float32"})
    if stored:
        return False, (
            f"{config.name} has {', '.join(stored)} tables; the torch comparison views float32 "
            "tables (TorchRec's int8 tables: benchmarks.latency --modes=torchrec)"
        )
    unsupported = {
        feature.name: reason
        for feature in config.features
        if (reason := _torch_unsupported(feature)) is not None
    }
    if not unsupported:
        return True, ""
    listed = "; ".join(f"{name}: {reason}" for name, reason in unsupported.items())
    return False, (
        f"{config.name} has features that are not sum-pooled, fixed-length, unweighted bags "
        f"({listed}); the torch comparison (one nn.EmbeddingBag(mode='sum') per feature) covers "
        "only such bags"
    )


def runnable_implementations(
    config: ModelConfig, requested: list[str]
) -> tuple[tuple[str, ...], list[str]]:
    """The requested implementations that can run here on `config`, and a note per skipped one."""
    runnable, notes = [], []
    for name in dict.fromkeys(requested):
        if name not in IMPLEMENTATIONS:
            raise ValueError(f"Unknown implementation {name!r}; expected one of {IMPLEMENTATIONS}.")
        available, detail = True, ""
        if name == TORCH:
            available, detail = torch_available()
            if available:
                available, detail = torch_supports(config)
        elif name == "native":
            available, detail = native.availability()
        if available:
            runnable.append(name)
        else:
            notes.append(f"skipping {name}: {detail}")
    return tuple(runnable), notes


def largest_group(collection: EmbeddingCollection) -> str:
    """The table group whose stacked buffer holds the most bytes (where the ceiling is measured)."""
    buffers = collection.table_buffers()
    return max(buffers, key=lambda group: buffers[group].nbytes)


def measure_gather_ceiling(
    collection: EmbeddingCollection, rows_to_gather: int, threads: int, repeats: int
) -> tuple[Ceiling, str]:
    """The gather ceiling on the largest table group's own memory, and where it was measured.

    Returns the ceiling and a phrase naming the group and its row size, e.g. "the largest table
    group d32_float32 (20,000,000 rows of 128 bytes)".
    """
    group = largest_group(collection)
    table = np.asarray(collection.table_buffers()[group])  # a read-only view: no copy
    rows, width = table.shape
    row_bytes = width * table.dtype.itemsize
    if table.dtype != np.float32:
        # Rows of other dtypes (quantized: uint8) are read as float32 words: the probe then moves
        # exactly the bytes of each row, from the same memory.
        if row_bytes % 4:
            raise ValueError(
                f"The gather ceiling reads rows as float32 words; group {group} has "
                f"{row_bytes}-byte rows, not a multiple of 4."
            )
        table = table.view(np.float32)
    ceiling = gather_ceiling(table, rows_to_gather, threads, repeats)
    source = f"the largest table group {group} ({rows:,} rows of {row_bytes} bytes)"
    return ceiling, source


def batch_seed(seed: int, batch_size: int, index: int) -> int:
    """The seed of the `index`-th rotated batch of `batch_size`."""
    return seed + 1000 * batch_size + index


def rotation_count(config: ModelConfig, batch_size: int, rotate_bytes: int) -> int:
    """How many distinct batches hold at least `rotate_bytes` of rows together (1 to 64)."""
    per_batch = batch_size * config.embedding_bytes_per_sample
    return int(np.clip(np.ceil(rotate_bytes / per_batch), 1, MAX_ROTATION))


def _jax_implementation(config: ModelConfig, lowering: str) -> Callable:
    """jit of (tables, batch) -> {feature: rows} by the collection of `config` under `lowering`.

    The collection's graph is taken from an abstract twin built with `lowering` (nothing
    allocated); the tables are an argument, so every lowering runs on the same buffers.
    """
    twin = nnx.eval_shape(
        lambda: EmbeddingCollection(
            config.tables, config.features, lowering=lowering, rngs=nnx.Rngs(0)
        )
    )
    graphdef, _ = nnx.split(twin)
    return jax.jit(lambda tables, batch: nnx.merge(graphdef, tables)(batch))


def _torch_implementation(
    config: ModelConfig, collection: EmbeddingCollection, threads: int
) -> Callable[[list], list]:
    """One nn.EmbeddingBag(mode="sum") per feature, as PyTorch users write it, viewing the
    collection's buffers (shared through DLPack: no copy)."""
    import torch

    torch.set_num_threads(threads)
    stacked = {
        group: torch.from_dlpack(buffer) for group, buffer in collection.table_buffers().items()
    }
    bags = []
    for feature in config.features:
        start = collection.table_offset[feature.table]
        rows = collection.table_rows[feature.table]
        table = stacked[collection.table_group[feature.table]][start : start + rows]
        bags.append(torch.nn.EmbeddingBag.from_pretrained(table, mode="sum"))

    def pool(per_feature_ids: list) -> list:
        with torch.inference_mode():
            return [bag(ids) for bag, ids in zip(bags, per_feature_ids, strict=True)]

    return pool


def _torch_inputs(config: ModelConfig, batch: Features) -> list:
    """[B, C] int32 ids of each feature, as contiguous CPU tensors."""
    import torch

    return [
        torch.from_numpy(np.ascontiguousarray(batch.ids_of(feature.name)))
        for feature in config.features
    ]


def _max_abs_difference(output: Lookups, reference: Lookups) -> float:
    return max(float(np.max(np.abs(output[name] - reference[name]))) for name in reference)


def run_embedding_benchmark(
    config: ModelConfig,
    collection: EmbeddingCollection,
    batch_sizes: tuple[int, ...],
    implementations: tuple[str, ...],
    budget: TimingBudget,
    rotate_bytes: int,
    seed: int,
    progress: Callable[[str], None] = print,
    ids: Mapping[str, IdDistribution] | None = None,
) -> list[EmbeddingMeasurement]:
    """Times every implementation at every batch size on the same rotated batches.

    Args:
      config: the model's config; its tables and features are those of `collection`.
      collection: the model's embedding collection (`model.sparse_arch`), holding the tables.
      implementations: names of `LOWERINGS` and/or TORCH, all runnable
        (`runnable_implementations`); the first one is the reference of `max_abs_difference`.
      ids: each table's id distribution (`recjax.inputs.id_distributions`); default uniform.
    """
    if TORCH in implementations and not (supported := torch_supports(config))[0]:
        raise ValueError(f"Cannot time torch: {supported[1]}.")
    tables = nnx.state(collection)
    compiled = {
        name: _jax_implementation(config, name) for name in implementations if name != TORCH
    }
    torch_pool = None
    if TORCH in implementations:
        torch_pool = _torch_implementation(config, collection, usable_cores())
    names = [feature.name for feature in config.features]
    measurements = []
    for batch_size in batch_sizes:
        count = rotation_count(config, batch_size, rotate_bytes)
        host_batches = [
            synthetic_features(config, batch_size, seed=batch_seed(seed, batch_size, i), ids=ids)
            for i in range(count)
        ]
        device_batches = [to_device(batch) for batch in host_batches]
        reference = None
        for name in implementations:
            label = f"{config.name} {name:<12} batch {batch_size:>5}"
            progress(f"{label}: timing over {count} distinct batch(es) ...")
            if name == TORCH:
                torch_batches = [_torch_inputs(config, batch) for batch in host_batches]
                pooled = torch_pool(torch_batches[0])
                output = {
                    feature: rows.numpy() for feature, rows in zip(names, pooled, strict=True)
                }
                batches = itertools.cycle(torch_batches)
                latencies = time_calls(lambda: torch_pool(next(batches)), budget)  # noqa: B023
            else:
                executable = compiled[name].lower(tables, device_batches[0]).compile()
                output = jax.tree.map(np.asarray, executable(tables, device_batches[0]))
                batches = itertools.cycle(device_batches)
                latencies = time_calls(lambda: executable(tables, next(batches)), budget)  # noqa: B023
            if reference is None:
                reference = output
            measurement = EmbeddingMeasurement(
                implementation=name,
                batch_size=batch_size,
                latencies_s=latencies,
                gathered_bytes_per_call=batch_size * config.embedding_bytes_per_sample,
                rows_per_call=batch_size * config.lookups_per_sample,
                max_abs_difference=_max_abs_difference(output, reference),
            )
            measurements.append(measurement)
            progress(
                f"{label}: p50 {measurement.stats.p50_ms:.3f} ms, "
                f"{measurement.gigabytes_per_s:.1f} GB/s"
            )
    return measurements


def format_table(
    measurements: list[EmbeddingMeasurement], ceiling: Ceiling, ceiling_source: str
) -> str:
    """The results, one row per case; `ceiling_source` says which table memory the ceiling
    was measured on (e.g. "the largest table group d32_float32: 128-byte rows")."""
    header = (
        f"{'implementation':<14}{'batch':>6}{'p50 ms':>10}{'p99 ms':>10}{'GB/s':>8}"
        f"{'M rows/s':>10}{'% ceiling':>11}{'calls':>7}"
    )
    lines = [
        f"gather ceiling: {ceiling.median:.1f} GB/s median, {ceiling.best:.1f} best "
        f"({ceiling.threads} threads, {ceiling.detail}, on {ceiling_source})",
        "bytes per call: B x every feature's capacity x its table's row bytes",
        header,
        "-" * len(header),
    ]
    for m in sorted(measurements, key=lambda m: (m.implementation, m.batch_size)):
        percent = 100 * m.gigabytes_per_s / ceiling.median
        lines.append(
            f"{m.implementation:<14}{m.batch_size:>6}{m.stats.p50_ms:>10.3f}{m.stats.p99_ms:>10.3f}"
            f"{m.gigabytes_per_s:>8.1f}{m.rows_per_s / 1e6:>10.1f}"
            f"{percent:>10.0f}%{m.stats.iterations:>7}"
        )
    return "\n".join(lines)

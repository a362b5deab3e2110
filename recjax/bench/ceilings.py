"""What this machine can do at best: the ceilings that recjax's numbers are compared with.

- Random-row gather: rows of D float32 at uniformly random positions of a table much larger than
  the last-level cache, summed (the work of an embedding bag, with no framework in the way).
- Streaming read: one pass over a large contiguous array.
- Matrix multiply: float32 [n, n] x [n, n] under `jax.jit` (XLA's own GEMM).

Gather and stream run the plain C++ loops of recjax/native/probes.cc on 1 thread and on every
usable core. Without the native library they fall back to NumPy on one thread, and say so: such a
number is a floor, not a ceiling.
"""

import dataclasses
import os
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from recjax import native

GB = 1e9


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """One probe's result: the median and best of its repeats."""

    probe: str
    threads: int
    median: float
    best: float
    unit: str
    detail: str

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def _repeat(work: Callable[[], object], repeats: int) -> np.ndarray:
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    return np.asarray(seconds)


def gather_ceiling(
    table: np.ndarray, rows_to_gather: int, threads: int, repeats: int, seed: int = 0
) -> Ceiling:
    """GB/s of summing `rows_to_gather` random rows of `table` ([rows, D] float32)."""
    num_rows, dim = table.shape
    row_ids = np.random.default_rng(seed).integers(0, num_rows, rows_to_gather, dtype=np.int32)
    gathered_bytes = rows_to_gather * dim * 4
    available, _ = native.availability()
    if available:
        seconds = _repeat(lambda: native.gather_rows(table, row_ids, threads), repeats)
        detail = f"C++ loop, {dim * 4}-byte rows, prefetching"
    else:
        threads = 1
        chunks = np.array_split(row_ids, max(1, rows_to_gather // 65_536))
        seconds = _repeat(lambda: [table[chunk].sum(axis=0) for chunk in chunks], repeats)
        detail = f"NumPy fallback (native probes unavailable), {dim * 4}-byte rows: a floor"
    return Ceiling(
        probe=f"gather_dim{dim}",
        threads=threads,
        median=gathered_bytes / np.median(seconds) / GB,
        best=gathered_bytes / np.min(seconds) / GB,
        unit="GB/s",
        detail=detail,
    )


def stream_ceiling(data: np.ndarray, threads: int, repeats: int) -> Ceiling:
    """GB/s of summing one contiguous float32 array."""
    available, _ = native.availability()
    if available:
        seconds = _repeat(lambda: native.stream_read(data, threads), repeats)
        detail = "C++ loop"
    else:
        threads = 1
        seconds = _repeat(data.sum, repeats)
        detail = "NumPy fallback (native probes unavailable): a floor"
    return Ceiling(
        probe="stream_read",
        threads=threads,
        median=data.nbytes / np.median(seconds) / GB,
        best=data.nbytes / np.min(seconds) / GB,
        unit="GB/s",
        detail=detail,
    )


def matmul_ceiling(size: int, repeats: int) -> Ceiling:
    """GFLOP/s of a float32 [size, size] x [size, size] product compiled by XLA."""
    keys = jax.random.split(jax.random.key(0))
    a = jax.random.normal(keys[0], (size, size), jnp.float32)
    b = jax.random.normal(keys[1], (size, size), jnp.float32)
    product = jax.jit(jnp.matmul).lower(a, b).compile()
    product(a, b).block_until_ready()
    seconds = _repeat(lambda: product(a, b).block_until_ready(), repeats)
    flops = 2 * size**3
    return Ceiling(
        probe="matmul_f32",
        threads=usable_cores(),
        median=flops / np.median(seconds) / 1e9,
        best=flops / np.min(seconds) / 1e9,
        unit="GFLOP/s",
        detail=f"jax.jit(jnp.matmul) on [{size}, {size}] x [{size}, {size}], XLA's threads",
    )


def measure_ceilings(
    table_bytes: int,
    rows_to_gather: int,
    dims: tuple[int, ...],
    matmul_size: int,
    repeats: int,
    progress: Callable[[str], None] = print,
) -> list[Ceiling]:
    """Every probe, on 1 thread and on every usable core."""
    data = np.ones(table_bytes // 4, np.float32)  # touched, so the pages exist before timing
    thread_counts = sorted({1, usable_cores()})
    results = []
    for threads in thread_counts:
        progress(f"stream read, {threads} thread(s) ...")
        results.append(stream_ceiling(data, threads, repeats))
    for dim in dims:
        table = data.reshape(-1, dim)
        for threads in thread_counts:
            progress(f"gather of {dim}-float rows, {threads} thread(s) ...")
            results.append(gather_ceiling(table, rows_to_gather, threads, repeats))
    progress(f"matmul {matmul_size}^3 ...")
    results.append(matmul_ceiling(matmul_size, repeats))
    return results


def best_gather_ceiling(ceilings: list[Ceiling], dim: int) -> Ceiling:
    """The all-cores gather ceiling for rows of `dim` floats (the highest median)."""
    candidates = [c for c in ceilings if c.probe == f"gather_dim{dim}"]
    if not candidates:
        raise ValueError(f"No gather ceiling for dim {dim}.")
    return max(candidates, key=lambda c: c.median)


def format_ceilings(ceilings: list[Ceiling]) -> str:
    header = f"{'probe':<14}{'threads':>8}{'median':>10}{'best':>10}  unit     detail"
    lines = [header, "-" * (len(header) + 30)]
    for c in ceilings:
        lines.append(
            f"{c.probe:<14}{c.threads:>8}{c.median:>10.1f}{c.best:>10.1f}  {c.unit:<8} {c.detail}"
        )
    return "\n".join(lines)

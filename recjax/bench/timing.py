"""Timing discipline: warm up, block on every result, bound by count and time, take percentiles."""

import dataclasses
import time
from collections.abc import Callable

import jax
import numpy as np


@dataclasses.dataclass(frozen=True)
class TimingBudget:
    """How many calls to time.

    Timing stops once at least `min_iterations` calls *and* `min_seconds` have passed, or at
    `max_iterations` calls, or once `max_seconds` have passed (which overrides `min_iterations`, so
    a slow mode stays bounded; at least one call is always timed).
    """

    warmup: int = 5
    min_iterations: int = 50
    max_iterations: int = 10_000
    min_seconds: float = 2.0
    max_seconds: float = 10.0

    def __post_init__(self):
        if self.warmup < 0 or self.min_iterations < 1 or self.max_iterations < self.min_iterations:
            raise ValueError(
                f"Need warmup >= 0 and 1 <= min_iterations <= max_iterations; got {self}."
            )
        if self.min_seconds < 0 or self.max_seconds <= 0:
            raise ValueError(f"Need min_seconds >= 0 and max_seconds > 0; got {self}.")


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of per-call latencies, in milliseconds."""

    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    iterations: int

    @classmethod
    def from_seconds(cls, latencies_s: np.ndarray) -> "LatencyStats":
        ms = np.asarray(latencies_s, np.float64) * 1e3
        if ms.size == 0:
            raise ValueError("No latencies to summarize.")
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=float(ms.mean()),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            iterations=int(ms.size),
        )


def time_calls(
    call: Callable[[], object],
    budget: TimingBudget,
    clock: Callable[[], float] = time.perf_counter,
) -> np.ndarray:
    """Per-call latencies in seconds of `call()`, each ended by `jax.block_until_ready`.

    The warm-up calls are run and discarded first.
    """
    for _ in range(budget.warmup):
        jax.block_until_ready(call())
    latencies = []
    start = clock()
    while True:
        before = clock()
        jax.block_until_ready(call())
        after = clock()
        latencies.append(after - before)
        elapsed = after - start
        count = len(latencies)
        enough = count >= budget.min_iterations and elapsed >= budget.min_seconds
        if enough or count >= budget.max_iterations or elapsed >= budget.max_seconds:
            return np.asarray(latencies)

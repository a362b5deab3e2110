"""Latency-bounded throughput: the selection over hand-built measurements."""

import numpy as np
import pytest

from recjax.bench.latency_bound import best_under_p99, format_best, to_json
from recjax.bench.latency_sweep import Measurement


def measurement(mode, batch_size, latency_ms, tail_ms=None):
    """100 calls of `latency_ms`, the slowest two of `tail_ms`: p99 is near tail_ms."""
    latencies = np.full(100, latency_ms / 1e3)
    if tail_ms is not None:
        latencies[-2:] = tail_ms / 1e3
    return Measurement(mode, batch_size, latencies, None, None)


SWEEP = [
    # batch, mean ms, p99 about: throughputs 2,000 / 8,000 / 10,667 / 8,533 samples/s
    measurement("jit", 1, 0.5),
    measurement("jit", 16, 2.0),
    measurement("jit", 64, 6.0, tail_ms=30.0),
    measurement("jit", 256, 30.0),
    measurement("eager", 1, 80.0),
    measurement("eager", 16, 95.0),
]


def test_picks_the_highest_throughput_whose_p99_meets_the_target():
    best = best_under_p99(SWEEP, p99_target_ms=10.0)
    assert best["jit"].batch_size == 16  # batch 64 is faster on average but its p99 is ~30 ms
    assert best["eager"] is None
    assert best_under_p99(SWEEP, p99_target_ms=40.0)["jit"].batch_size == 64
    assert best_under_p99(SWEEP, p99_target_ms=1.0)["jit"].batch_size == 1
    assert best_under_p99(SWEEP, p99_target_ms=100.0)["eager"].batch_size == 16


def test_the_target_is_inclusive_and_ties_go_to_the_smaller_batch():
    exact = [measurement("jit", 4, 2.0), measurement("jit", 8, 4.0)]  # same samples/s
    assert best_under_p99(exact, p99_target_ms=4.0)["jit"].batch_size == 4
    assert best_under_p99(exact, p99_target_ms=3.999)["jit"].batch_size == 4
    assert best_under_p99(exact, p99_target_ms=1.999)["jit"] is None


def test_no_mode_meets_the_target():
    best = best_under_p99(SWEEP, p99_target_ms=0.1)
    assert best == {"jit": None, "eager": None}
    assert "no batch size meets the target" in format_best(best, 0.1)
    assert to_json(best, 0.1) == {"p99_target_ms": 0.1, "best": {"jit": None, "eager": None}}


def test_report_names_batch_and_throughput():
    best = best_under_p99(SWEEP, p99_target_ms=10.0)
    assert "jit    batch 16: 8,000 samples/s (p99 2.000 ms)" in format_best(best, 10.0)
    assert to_json(best, 10.0)["best"]["jit"] == {
        "batch_size": 16,
        "throughput_samples_per_s": pytest.approx(8000.0),
        "p99_ms": pytest.approx(2.0),
    }


@pytest.mark.parametrize("target", [0.0, -1.0, float("nan")])
def test_bad_target_is_refused(target):
    with pytest.raises(ValueError, match="positive number of ms"):
        best_under_p99(SWEEP, target)

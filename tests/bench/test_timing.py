import numpy as np
import pytest

from recjax.bench.timing import LatencyStats, TimingBudget, time_calls


class FakeClock:
    """Advances by `step` seconds on every call of the clock; counts calls of the function."""

    def __init__(self, step):
        self.now, self.step, self.calls = 0.0, step, 0

    def __call__(self):
        self.now += self.step
        return self.now

    def work(self):
        self.calls += 1
        return np.zeros(())


def test_stops_after_min_iterations_and_min_seconds():
    clock = FakeClock(step=0.01)  # each timed call measures 0.01 s, elapsed grows 0.02 s per call
    budget = TimingBudget(warmup=2, min_iterations=10, min_seconds=1.0, max_seconds=100.0)
    latencies = time_calls(clock.work, budget, clock=clock)
    assert np.allclose(latencies, 0.01)
    # The clock starts at 0.01; after n calls it reads 0.01 + 0.02 n: elapsed 0.02 n >= 1 at n = 50.
    assert len(latencies) == 50 and clock.calls == 52  # plus two warm-up calls


def test_max_seconds_overrides_min_iterations():
    clock = FakeClock(step=1.0)
    budget = TimingBudget(warmup=0, min_iterations=100, min_seconds=0.0, max_seconds=5.0)
    assert len(time_calls(clock.work, budget, clock=clock)) == 3  # elapsed 1, 3, 5


def test_max_iterations():
    clock = FakeClock(step=1e-6)
    budget = TimingBudget(warmup=0, min_iterations=5, max_iterations=7, min_seconds=10.0)
    assert len(time_calls(clock.work, budget, clock=clock)) == 7


def test_latency_stats_percentiles_by_hand():
    stats = LatencyStats.from_seconds(np.arange(1, 101) / 1000)  # 1 ms ... 100 ms
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p90_ms == pytest.approx(90.1)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert (stats.min_ms, stats.max_ms, stats.iterations) == (1.0, 100.0, 100)


def test_invalid_budgets_are_named():
    with pytest.raises(ValueError, match="min_iterations"):
        TimingBudget(min_iterations=0)
    with pytest.raises(ValueError, match="max_seconds"):
        TimingBudget(max_seconds=0)

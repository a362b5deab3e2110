"""Arrival schedules: exponential inter-arrival times of the requested mean (a KS test)."""

import math

import numpy as np
import pytest

from recjax.serving.arrivals import poisson_arrival_times
from recjax.serving.query_sizes import QuerySizeDistribution
from recjax.serving.server import make_schedule


def ks_statistic(samples: np.ndarray, cdf) -> float:
    """The Kolmogorov-Smirnov distance sup |F_n(x) - F(x)| between a sample and a CDF."""
    x = np.sort(samples)
    n = x.size
    f = cdf(x)
    above = np.arange(1, n + 1) / n - f
    below = f - np.arange(0, n) / n
    return float(max(above.max(), below.max()))


def ks_critical_value(n: int, alpha: float = 0.01) -> float:
    """The asymptotic one-sample KS critical value c(alpha) / sqrt(n), c = sqrt(-ln(alpha/2)/2)."""
    return math.sqrt(-math.log(alpha / 2) / 2) / math.sqrt(n)


def exponential_cdf(mean: float):
    return lambda x: 1.0 - np.exp(-x / mean)


QPS = 250.0
DURATION_S = 40.0


@pytest.fixture(scope="module")
def arrivals():
    return poisson_arrival_times(QPS, DURATION_S, 1_000_000, np.random.default_rng(7))


def test_inter_arrival_times_are_exponential_with_mean_one_over_qps(arrivals):
    gaps = np.diff(np.concatenate([[0.0], arrivals]))
    n = gaps.size
    # The count of a Poisson process over 40 s at 250/s: mean 10,000, sd 100.
    assert abs(n - QPS * DURATION_S) < 4 * math.sqrt(QPS * DURATION_S)
    # Mean of n exponential gaps: standard error (1/qps)/sqrt(n); 4 standard errors.
    assert abs(gaps.mean() - 1 / QPS) < 4 * (1 / QPS) / math.sqrt(n)
    # KS at the 1% level against Exp(mean 1/qps): 0.0163 at n = 10,000.
    assert ks_statistic(gaps, exponential_cdf(1 / QPS)) < ks_critical_value(n)


def test_the_ks_test_rejects_wrong_distributions(arrivals):
    """The check above can fail: a 10% wrong mean, and uniform gaps of the right mean, fail it."""
    gaps = np.diff(np.concatenate([[0.0], arrivals]))
    critical = ks_critical_value(gaps.size)
    assert ks_statistic(gaps, exponential_cdf(1.1 / QPS)) > critical
    uniform = np.random.default_rng(0).uniform(0, 2 / QPS, gaps.size)
    assert ks_statistic(uniform, exponential_cdf(1 / QPS)) > critical


def test_schedule_is_absolute_increasing_and_bounded():
    rng = np.random.default_rng(1)
    times = poisson_arrival_times(1000.0, 1.0, 100, rng)
    assert times.size == 100  # max_requests binds: about 1000 would arrive in 1 s
    assert np.all(np.diff(times) > 0) and times[0] > 0
    times = poisson_arrival_times(50.0, 2.0, 10_000, np.random.default_rng(2))
    assert times.max() < 2.0
    # Many draws: the loop extends the schedule until it passes the duration.
    long = poisson_arrival_times(0.5, 4000.0, 10_000, np.random.default_rng(3))
    assert long.max() < 4000.0 and abs(long.size - 2000) < 4 * math.sqrt(2000)


def test_rates_share_their_draws():
    """Same seed, two rates: the same exponential draws scaled by 1/qps, and the same sizes."""
    sizes = QuerySizeDistribution.parse("lognormal:5.1,0.2")
    slow = make_schedule(10.0, 100.0, 50, sizes, 1024, seed=3)
    fast = make_schedule(40.0, 25.0, 50, sizes, 1024, seed=3)
    np.testing.assert_allclose(fast.arrival_s * 4, slow.arrival_s, rtol=1e-12)
    np.testing.assert_array_equal(fast.query_sizes, slow.query_sizes)


@pytest.mark.parametrize(
    ("qps", "duration", "requests"), [(0, 1, 1), (-1, 1, 1), (1, 0, 1), (1, 1, 0)]
)
def test_bad_arguments_are_refused(qps, duration, requests):
    with pytest.raises(ValueError, match="Need qps > 0"):
        poisson_arrival_times(qps, duration, requests, np.random.default_rng(0))

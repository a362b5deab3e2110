"""Query sizes follow the requested distribution and are clamped to [1, max_query_size]."""

import math

import numpy as np
import pytest

from recjax.serving.query_sizes import QuerySizeDistribution

COUNT = 20_000


def sample(spec: str, max_query_size: int = 10_000, seed: int = 0) -> np.ndarray:
    distribution = QuerySizeDistribution.parse(spec)
    return distribution.sample(COUNT, max_query_size, np.random.default_rng(seed))


def test_fixed_and_clamped():
    assert set(sample("fixed:64").tolist()) == {64}
    assert set(sample("fixed:2000", max_query_size=1024).tolist()) == {1024}
    sizes = sample("normal:0,5")  # draws below 1.5 round to <= 1 and are clamped to 1
    expected = 0.5 * math.erfc(-(1.5 / 5) / math.sqrt(2))  # P(N(0, 5) < 1.5) = 0.618
    assert sizes.min() == 1 and abs(np.mean(sizes == 1) - expected) < 0.015


def test_normal_moments():
    sizes = sample("normal:100,15")
    # Rounding adds variance 1/12; standard errors 15/sqrt(n) = 0.11 (mean), about 0.075 (sd).
    assert abs(sizes.mean() - 100) < 4 * 15 / math.sqrt(COUNT)
    assert abs(sizes.std() - math.sqrt(15**2 + 1 / 12)) < 0.4


def test_lognormal_matches_deeprecsys_parameters():
    sizes = sample("lognormal:5.1,0.2")
    assert sizes.min() >= 1
    # Median exp(5.1) = 164.0; the sample median of 20,000 has sd about 0.3 items.
    assert abs(np.median(sizes) - math.exp(5.1)) <= 2
    logs = np.log(sizes)  # rounding to integers moves log(size) by at most 0.5/100
    assert abs(logs.mean() - 5.1) < 0.01
    assert abs(logs.std() - 0.2) < 0.01


def test_lognormal_is_clamped_at_the_top():
    sizes = sample("lognormal:5.1,0.2", max_query_size=150)
    assert sizes.max() == 150
    # P(exp(N(5.1, 0.2)) >= 149.5) = P(Z >= (ln 149.5 - 5.1)/0.2) = 0.674.
    expected = 0.5 * math.erfc(((math.log(149.5) - 5.1) / 0.2) / math.sqrt(2))
    assert abs(np.mean(sizes == 150) - expected) < 0.015


def test_quantile_file(tmp_path):
    path = tmp_path / "sizes.txt"
    path.write_text("# items per query at probability 0, 0.25, 0.5, 0.75, 1\n10\n20\n40, 80\n400\n")
    sizes = sample(f"quantiles:{path}")
    # Inverse-CDF sampling with linear interpolation: P(size <= q_k) = k / 4 (up to rounding).
    for quantile, probability in ((20, 0.25), (40, 0.5), (80, 0.75)):
        assert abs(np.mean(sizes <= quantile) - probability) < 0.015
    assert sizes.min() == 10 and sizes.max() == 400
    # Uniform within a segment: the mean of sizes between 80 and 400 is about 240.
    top = sizes[sizes > 80]
    assert abs(top.mean() - 240) < 4


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lognormal:5.1", "lognormal takes MU,SIGMA"),
        ("lognormal:5.1,-1", "lognormal takes MU,SIGMA with SIGMA >= 0"),
        ("normal:a,b", "is not a list of numbers"),
        ("fixed:0", "fixed takes one integer N >= 1"),
        ("fixed:2.5", "fixed takes one integer N >= 1"),
        ("poisson:3", "malformed; expected fixed:N, normal:MU,SIGMA"),
        ("165", "malformed"),
        ("fixed:", "malformed"),
        ("quantiles:/nonexistent/sizes.txt", "cannot be read"),
    ],
)
def test_malformed_specs_are_refused(spec, message):
    with pytest.raises(ValueError, match=message):
        QuerySizeDistribution.parse(spec)


def test_bad_quantile_files_are_refused(tmp_path):
    decreasing = tmp_path / "decreasing.txt"
    decreasing.write_text("10 5 20")
    with pytest.raises(ValueError, match="non-decreasing"):
        QuerySizeDistribution.parse(f"quantiles:{decreasing}")
    single = tmp_path / "single.txt"
    single.write_text("10")
    with pytest.raises(ValueError, match="at least 2"):
        QuerySizeDistribution.parse(f"quantiles:{single}")


def test_max_query_size_below_one_is_refused():
    with pytest.raises(ValueError, match="max_query_size must be >= 1; got 0"):
        sample("fixed:3", max_query_size=0)

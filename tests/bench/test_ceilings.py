import numpy as np
import pytest

from recjax import native
from recjax.bench import ceilings

needs_native = pytest.mark.skipif(
    not native.availability()[0], reason=f"native library unavailable: {native.availability()[1]}"
)


@needs_native
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_gather_rows_sums_the_rows(threads):
    rng = np.random.default_rng(0)
    table = rng.standard_normal((1000, 32)).astype(np.float32)
    row_ids = rng.integers(0, 1000, 5000, dtype=np.int32)
    expected = table[row_ids].astype(np.float64).sum()
    assert native.gather_rows(table, row_ids, threads) == pytest.approx(expected, rel=1e-4)


@needs_native
def test_stream_read_sums_everything():
    data = np.arange(100_003, dtype=np.float32) / 1000
    assert native.stream_read(data, 2) == pytest.approx(data.astype(np.float64).sum(), rel=1e-5)


@needs_native
def test_gather_rows_refuses_out_of_range_ids():
    table = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        native.gather_rows(table, np.asarray([3, 10], np.int32), 1)


def test_ceilings_report_rates_from_sizes():
    table = np.ones((4096, 16), np.float32)
    gather = ceilings.gather_ceiling(table, rows_to_gather=20_000, threads=1, repeats=2)
    assert gather.probe == "gather_dim16" and gather.unit == "GB/s"
    assert 0 < gather.median <= gather.best
    stream = ceilings.stream_ceiling(table.reshape(-1), threads=1, repeats=2)
    assert 0 < stream.median <= stream.best
    matmul = ceilings.matmul_ceiling(64, repeats=2)
    assert matmul.unit == "GFLOP/s" and 0 < matmul.median <= matmul.best
    assert ceilings.best_gather_ceiling([gather, stream], 16) is gather
    with pytest.raises(ValueError, match="dim 32"):
        ceilings.best_gather_ceiling([gather], 32)

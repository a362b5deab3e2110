"""Locality figures against hand calculations, Che's approximation and NumPy counts."""

import math

import numpy as np
import pytest
from scipy import optimize

import configs
from recjax.inputs import id_distributions as ids
from recjax.inputs import locality
from recjax.inputs.features import TableConfig
from recjax.inputs.synthetic import synthetic_features, table_columns, valid_positions
from tests.layers.test_embedding_collection import Spec

ITEM_ROW_BYTES = 32  # Spec's items table: 40 rows of 8 float32


def che_hit_rate(probabilities: np.ndarray, capacity: int) -> float:
    """Che's approximation of an LRU cache's hit rate under independent draws."""
    filled = optimize.brentq(
        lambda t: np.sum(1 - np.exp(-probabilities * t)) - capacity, 1e-9, 1e12
    )
    return float(np.sum(probabilities * (1 - np.exp(-probabilities * filled))))


def test_hot_share_is_unbiased_for_uniform_ids_and_fills_up_short_samples():
    rng = np.random.default_rng(0)
    first, second = rng.integers(0, 10_000, 20_000), rng.integers(0, 10_000, 200_000)
    share, hot_rows = locality.hot_share(first, second, 10_000)
    assert hot_rows == 100 and abs(share - 0.01) < 0.002
    # 30 rows seen, 100 hot: the 30 and the 70 lowest unseen rows.
    share, _ = locality.hot_share(np.arange(30) * 7, np.arange(10_000), 10_000)
    assert share == pytest.approx(100 / 10_000)


def test_hot_share_of_zipf_ids_is_the_distributions_top_share():
    table = TableConfig("t", 2000, 4)
    sample = ids.Zipf(1.1).sample(table, 800_000, np.random.default_rng(1))
    share, hot_rows = locality.hot_share(sample[:400_000], sample[400_000:], table.num_rows)
    weights = np.arange(1, 2001) ** -1.1
    assert hot_rows == 20 and share == pytest.approx(weights[:20].sum() / weights.sum(), abs=0.005)


def test_figures_of_a_batch_and_its_streams():
    batch = synthetic_features(Spec, 32, seed=2, ids={"users": ids.Zipf(1.0)})
    figures = locality.measure_locality(
        Spec, batch, {"users": ids.Zipf(1.0)}, seed=0, cache_bytes=10 * ITEM_ROW_BYTES
    )
    by_table = {item.table: item for item in figures}
    assert set(by_table) == {"items", "users", "cities"}
    for table in Spec.tables:
        columns = table_columns(Spec, table.name)
        lookups = batch.ids[:, columns][valid_positions(Spec, batch.lengths, columns)]
        item = by_table[table.name]
        assert item.lookups_per_batch == lookups.size
        assert item.unique_rows_per_batch == np.unique(lookups).size
        assert item.batch_size == 32 and item.measured_on == table.name
        assert item.cache_rows == 10 * ITEM_ROW_BYTES // table.row_bytes
        assert item.sample_lookups >= locality.MIN_SAMPLE_LOOKUPS
    # Uniform ids over 40 rows, 10 cached: a steady-state LRU hits 10 / 40 of the lookups.
    items = by_table["items"]
    assert items.ids == "uniform" and items.cache_filled
    assert items.lru_hit_rate == pytest.approx(0.25, abs=0.01)
    assert items.hot_rows == 1 and items.hot_share == pytest.approx(1 / 40, abs=0.005)
    # Zipf(1.0) over 11 rows, 10 cached: Che's approximation, independently.
    users = by_table["users"]
    pmf = 1 / np.arange(1, 12)
    assert users.ids == "zipf:1" and users.cache_filled
    assert users.lru_hit_rate == pytest.approx(che_hit_rate(pmf / pmf.sum(), 10), abs=0.01)
    # The hottest row of users (1 of 11) takes P(rank 1) of the lookups.
    assert users.hot_share == pytest.approx(pmf[0] / pmf.sum(), abs=0.01)


def test_alike_tables_are_sampled_once_and_grouped_in_the_table():
    config = configs.get("rmc2-tiny")
    batch = synthetic_features(config, 2, seed=0)
    figures = locality.measure_locality(config, batch, None, seed=0, cache_bytes=2**20)
    assert {item.measured_on for item in figures} == {"rmc2_table_0"}
    assert len({(item.lru_hit_rate, item.hot_share) for item in figures}) == 1
    text = locality.format_locality(figures, "test cache")
    assert "rmc2_table_0 +31 alike" in text and text.count("\n") == 3
    table_rows = math.ceil(0.01 * 1000)
    assert all(item.hot_rows == table_rows for item in figures)

    scalars = []

    class Writer:
        def scalar(self, tag, value, step):
            scalars.append((tag, value, step))

    locality.write_summaries(Writer(), figures)
    assert ("locality/rmc2_table_7/unique_rows_per_batch", figures[7].unique_rows_per_batch, 2) in (
        scalars
    )
    assert len(scalars) == 3 * 32


def test_bad_cache_sizes_are_refused():
    batch = synthetic_features(Spec, 2, seed=0)
    with pytest.raises(ValueError, match="cache_bytes and max_sample_lookups must be positive"):
        locality.measure_locality(Spec, batch, None, seed=0, cache_bytes=0)

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recjax.layers.embedding_bag import (
    LOWERINGS,
    EmbeddingBagCollection,
    EmbeddingTableConfig,
    init_stacked_tables,
)

TABLES = (
    EmbeddingTableConfig("a", 50, 8),
    EmbeddingTableConfig("b", 7, 8),
    EmbeddingTableConfig("c", 300, 8),
)


def numpy_bags(tables, ids):
    """SparseLengthsSum, one loop per bag: pooled[b, t] = sum_l tables[t][ids[b, t, l]]."""
    batch, num_tables, pooling = ids.shape
    out = np.zeros((batch, num_tables, tables[0].shape[1]), np.float64)
    for b in range(batch):
        for t in range(num_tables):
            for lookup in range(pooling):
                out[b, t] += tables[t][ids[b, t, lookup]]
    return out


def random_ids(batch, pooling, seed):
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.integers(0, table.num_rows, (batch, pooling)) for table in TABLES], axis=1
    ).astype(np.int32)


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("pooling", [1, 5, 9])
def test_lowering_matches_numpy(lowering, pooling):
    bags = EmbeddingBagCollection(TABLES, lowering=lowering, rngs=nnx.Rngs(0))
    stacked = np.asarray(bags.weight[...])
    offsets = np.cumsum([0] + [table.num_rows for table in TABLES])
    per_table = [stacked[offsets[t] : offsets[t + 1]] for t in range(len(TABLES))]
    ids = random_ids(6, pooling, seed=pooling)
    got = jax.jit(lambda module, x: module(x))(bags, ids)
    np.testing.assert_allclose(got, numpy_bags(per_table, ids), rtol=1e-5, atol=1e-6)


def test_lowerings_agree_with_each_other():
    ids = random_ids(4, 12, seed=3)
    results = []
    for lowering in sorted(LOWERINGS):
        bags = EmbeddingBagCollection(TABLES, lowering=lowering, rngs=nnx.Rngs(5))
        results.append(np.asarray(bags(ids)))
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], rtol=1e-5, atol=1e-6)


def test_init_is_uniform_within_each_tables_bound():
    stacked = np.asarray(init_stacked_tables(jax.random.key(0), TABLES))
    assert stacked.shape == (357, 8)
    start = 0
    for table in TABLES:
        block = stacked[start : start + table.num_rows]
        bound = 1 / np.sqrt(table.num_rows)
        assert np.abs(block).max() <= bound
        assert np.abs(block).max() > 0.8 * bound  # filled, not left at zero
        start += table.num_rows
    first, second = stacked[:7], stacked[50:57]
    assert not np.allclose(first * np.sqrt(50), second * np.sqrt(7)), "tables share one stream"


def test_ids_in_range():
    bags = EmbeddingBagCollection(TABLES, lowering="pooling_loop", rngs=nnx.Rngs(0))
    ids = random_ids(2, 3, seed=0)
    assert bool(bags.ids_in_range(ids))
    for table, bad_id in ((1, 7), (0, -1), (2, 300)):
        bad = ids.copy()
        bad[1, table, 2] = bad_id
        assert not bool(bags.ids_in_range(jnp.asarray(bad)))


def test_rejects_mixed_dims_and_unknown_lowering():
    with pytest.raises(ValueError, match=r"one dim; got dims \[4, 8\]"):
        EmbeddingBagCollection(
            (EmbeddingTableConfig("a", 5, 4), EmbeddingTableConfig("b", 5, 8)),
            lowering="pooling_loop",
            rngs=nnx.Rngs(0),
        )
    with pytest.raises(ValueError, match="'fastest'.*gather_sum"):
        EmbeddingBagCollection(TABLES, lowering="fastest", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_rows=0"):
        EmbeddingTableConfig("empty", 0, 8)

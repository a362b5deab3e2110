import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from recjax import native
from recjax.layers.embedding_bag import (
    LOWERINGS,
    EmbeddingBagCollection,
    EmbeddingTableConfig,
    init_stacked_tables,
    resolve_lowering,
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


def skip_unless_available(lowering):
    available, detail = native.availability()
    if lowering == "native" and not available:
        pytest.skip(f"native library unavailable: {detail}")


def random_ids(batch, pooling, seed):
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.integers(0, table.num_rows, (batch, pooling)) for table in TABLES], axis=1
    ).astype(np.int32)


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
@pytest.mark.parametrize("pooling", [1, 5, 9])
def test_lowering_matches_numpy(lowering, pooling):
    skip_unless_available(lowering)
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
        skip_unless_available(lowering)
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
    with pytest.raises(ValueError, match="'fastest'.*auto.*gather_sum"):
        EmbeddingBagCollection(TABLES, lowering="fastest", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_rows=0"):
        EmbeddingTableConfig("empty", 0, 8)


def test_ragged_bags_match_numpy():
    bags = EmbeddingBagCollection(TABLES, lowering="segment_sum", rngs=nnx.Rngs(2))
    stacked = np.asarray(bags.weight[...])
    offsets = np.cumsum([0] + [table.num_rows for table in TABLES])
    rng = np.random.default_rng(7)
    lengths = rng.integers(0, 6, size=(5, len(TABLES))).astype(np.int32)
    lengths[0, 1] = 0  # an empty bag pools to zeros
    values, expected = [], np.zeros((5, len(TABLES), 8))
    for b in range(5):
        for t, table in enumerate(TABLES):
            ids = rng.integers(0, table.num_rows, lengths[b, t])
            values.extend(ids)
            for row in ids:
                expected[b, t] += stacked[offsets[t] + row]
    values = np.asarray(values, np.int32)
    got = jax.jit(lambda m, v, n: m.pool_ragged(v, n))(bags, values, lengths)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert bool(bags.ragged_ids_in_range(values, lengths))
    bad = values.copy()
    bad[-1] = TABLES[-1].num_rows  # the last value belongs to the last table
    assert not bool(bags.ragged_ids_in_range(bad, lengths))


def test_auto_resolves_to_native_when_built():
    available, detail = native.availability()
    bags = EmbeddingBagCollection(TABLES, lowering="auto", rngs=nnx.Rngs(0))
    assert bags.lowering == ("native" if available else "pooling_loop"), detail


def test_auto_falls_back_to_pure_jax_and_says_why(monkeypatch):
    monkeypatch.setattr(native, "availability", lambda: (False, "no compiler"))
    lowering, note = resolve_lowering("auto")
    assert lowering == "pooling_loop"
    assert "unavailable: no compiler" in note
    with pytest.raises(RuntimeError, match="native embedding-bag lowering is unavailable"):
        resolve_lowering("native")


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
def test_out_of_range_ids_are_clamped_not_read_out_of_bounds(lowering):
    skip_unless_available(lowering)
    stacked = jnp.arange(40, dtype=jnp.float32).reshape(10, 4)
    flat_ids = jnp.asarray([[[-3, 9, 10_000_000]]], jnp.int32)  # [B=1, T=1, L=3]
    got = jax.jit(LOWERINGS[lowering])(stacked, flat_ids)
    np.testing.assert_array_equal(got[0, 0], np.asarray(stacked[0] + stacked[9] + stacked[9]))

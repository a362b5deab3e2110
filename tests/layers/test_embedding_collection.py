import jax
import numpy as np
import pytest
from flax import nnx

from recjax import native
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.inputs.synthetic import synthetic_features
from recjax.layers.embedding_bag import LOWERINGS
from recjax.layers.embedding_collection import EmbeddingCollection, init_stacked_tables


class Spec:
    """Just the fields synthetic_features reads: a model with a shared table, two dims, a
    sequence, a mean bag, a weighted bag and features of one call that are not adjacent."""

    name = "spec"
    dense_features = 3
    heads = ("click",)
    tables = (
        TableConfig("items", 40, 8),
        TableConfig("users", 11, 8),
        TableConfig("cities", 9, 4),
    )
    features = (
        FeatureConfig("history", "items", 6, fixed_length=False),
        FeatureConfig("city", "cities", 1),
        FeatureConfig("user", "users", 2),
        FeatureConfig("candidate", "items", 2),
        FeatureConfig("recent", "items", 5, pooling="none", fixed_length=False),
        FeatureConfig("mean_items", "items", 4, pooling="mean", fixed_length=False),
        FeatureConfig("scored", "users", 3, weighted=True, fixed_length=False),
    )

    @classmethod
    def table(cls, name):
        return next(table for table in cls.tables if table.name == name)


def numpy_lookup(collection, batch):
    """Per feature, per sample: the rows of its own table, pooled or not, from NumPy."""
    buffers = {name: np.asarray(value) for name, value in collection.table_buffers().items()}
    out = {}
    for feature in Spec.features:
        table = Spec.table(feature.table)
        rows_of_table = buffers[f"d{table.dim}_float32"][
            collection.table_offset[table.name] : collection.table_offset[table.name]
            + table.num_rows
        ]
        ids = np.asarray(batch.ids_of(feature.name))
        lengths = np.asarray(batch.lengths_of(feature.name))
        column = batch.layout.columns[batch.layout.index(feature.name)]
        values = []
        for b in range(ids.shape[0]):
            rows = rows_of_table[ids[b, : lengths[b]]].astype(np.float64)
            if feature.weighted:
                rows = rows * np.asarray(batch.weights)[b, column : column + lengths[b], None]
            if feature.pooling == "none":
                padded = np.zeros((feature.capacity, table.dim))
                padded[: lengths[b]] = rows
                values.append(padded)
            elif feature.pooling == "mean":
                values.append(rows.sum(0) / max(lengths[b], 1))
            else:
                values.append(rows.sum(0))
        out[feature.name] = np.stack(values)
    return out


@pytest.mark.parametrize("lowering", sorted(LOWERINGS))
def test_collection_matches_numpy(lowering):
    if lowering == "native" and not native.availability()[0]:
        pytest.skip(native.availability()[1])
    collection = EmbeddingCollection(
        Spec.tables, Spec.features, lowering=lowering, rngs=nnx.Rngs(0)
    )
    assert sorted(collection.table_buffers()) == ["d4_float32", "d8_float32"]
    batch = synthetic_features(Spec, 7, seed=3)
    got = jax.jit(lambda module, x: module(x))(collection, batch)
    expected = numpy_lookup(collection, batch)
    assert sorted(got) == sorted(feature.name for feature in Spec.features)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-5, atol=1e-6, err_msg=name)


def test_features_of_one_call_are_grouped_and_not_adjacent_ones_still_pooled():
    collection = EmbeddingCollection(
        Spec.tables, Spec.features, lowering="pooling_loop", rngs=nnx.Rngs(0)
    )
    calls = {call.features: call for call in collection.pooled_calls}
    # user (capacity 2, users table, d8) and candidate (capacity 2, items table, d8) pool together
    together = calls[("user", "candidate")]
    assert together.contiguous  # columns 7 and 9 of the id block
    assert together.row_offsets == (40, 0)
    assert ("history",) in calls and ("city",) in calls and ("scored",) in calls


def test_init_is_uniform_within_each_tables_bound_and_independent():
    tables = (TableConfig("a", 50, 8), TableConfig("b", 7, 8))
    stacked = np.asarray(init_stacked_tables(jax.random.key(0), tables, (0, 1)))
    assert stacked.shape == (57, 8)
    for block, rows in ((stacked[:50], 50), (stacked[50:], 7)):
        bound = 1 / np.sqrt(rows)
        assert np.abs(block).max() <= bound
        assert np.abs(block).max() > 0.8 * bound  # filled, not left at zero
    alone = np.asarray(init_stacked_tables(jax.random.key(0), tables[1:], (1,)))
    np.testing.assert_array_equal(alone, stacked[50:])  # a table's values do not depend on others


def test_a_batch_of_another_layout_is_refused():
    collection = EmbeddingCollection(
        Spec.tables, Spec.features[:2], lowering="pooling_loop", rngs=nnx.Rngs(0)
    )
    with pytest.raises(ValueError, match=r"not the model's \['history', 'city'\]"):
        collection(synthetic_features(Spec, 2, seed=0))

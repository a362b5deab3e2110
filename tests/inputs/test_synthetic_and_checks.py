import dataclasses

import jax
import numpy as np
import pytest

import configs
from recjax.inputs.checks import check_batch_shapes, describe_invalid_inputs, inputs_valid
from recjax.inputs.features import FeatureConfig, FeatureLayout, TableConfig, make_features
from recjax.inputs.synthetic import abstract_features, synthetic_features
from tests.layers.test_embedding_collection import Spec


def test_synthetic_batch_is_deterministic_and_in_each_tables_range():
    config = configs.get("rmc1-tiny")
    first, again = (synthetic_features(config, 4, seed=7) for _ in range(2))
    np.testing.assert_array_equal(first.ids, again.ids)
    np.testing.assert_array_equal(first.dense, again.dense)
    assert first.ids.shape == (4, 8 * 80) and first.lengths.shape == (4, 8)
    assert np.all(first.lengths == 80) and first.weights is None and first.labels is None
    assert first.ids.min() >= 0 and first.ids.max() < 1000
    assert len(np.unique(first.ids)) > 500  # spread over the table, not one row
    assert not np.array_equal(synthetic_features(config, 4, seed=8).ids, first.ids)


def test_ragged_features_hold_zero_past_their_length():
    batch = synthetic_features(Spec, 50, seed=1)
    history = np.asarray(batch.ids_of("history"))
    lengths = np.asarray(batch.lengths_of("history"))
    assert lengths.min() >= 1 and lengths.max() <= 6 and len(set(lengths)) > 3
    for row, length in zip(history, lengths, strict=True):
        assert np.all(row[length:] == 0)
    assert np.all(np.asarray(batch.lengths_of("city")) == 1)  # fixed length: full
    assert np.asarray(batch.ids_of("city")).max() < 9  # its own table's rows
    assert batch.weights.shape == batch.ids.shape


def test_abstract_features_match_synthetic_ones():
    batch = synthetic_features(Spec, 3, seed=0, labels=True)
    abstract = abstract_features(Spec, 3, labels=True)
    for real, shape in zip(jax.tree.leaves(batch), jax.tree.leaves(abstract), strict=True):
        assert (real.shape, real.dtype) == (shape.shape, shape.dtype)
    assert set(batch.labels) == {"click"} and set(np.unique(batch.labels["click"])) <= {0.0, 1.0}


def test_make_features_lays_out_columns_by_feature():
    features = (FeatureConfig("a", "t", 2), FeatureConfig("b", "t", 3, fixed_length=False))
    batch = make_features(
        np.zeros((2, 1), np.float32),
        {
            "b": (np.asarray([[5, 6, 0], [7, 0, 0]]), np.asarray([2, 1])),
            "a": (np.asarray([[1, 2], [3, 4]]), np.asarray([2, 2])),
        },
        features,
    )
    np.testing.assert_array_equal(batch.ids, [[1, 2, 5, 6, 0], [3, 4, 7, 0, 0]])
    np.testing.assert_array_equal(batch.ids_of("b"), [[5, 6, 0], [7, 0, 0]])
    assert batch.layout == FeatureLayout(("a", "b"), (2, 3))
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        make_features(np.zeros((2, 1)), {"a": (np.zeros((2, 2)), np.zeros(2))}, features)


def valid(config, batch):
    return bool(jax.jit(lambda b: inputs_valid(config, b))(batch))


def test_every_kind_of_bad_input_is_caught_and_named():
    config = configs.get("rmc2-tiny")
    batch = synthetic_features(config, 2, seed=0)
    assert valid(config, batch)
    assert describe_invalid_inputs(config, batch) == "all inputs are valid"
    cases = []
    for bad_id in (1000, -1):
        ids = batch.ids.copy()
        ids[1, 30 * 120 + 7] = bad_id
        cases.append(
            (
                dataclasses.replace(batch, ids=ids),
                rf"first is {bad_id} at \[sample 1, feature 'rmc2_table_30', position 7\], but "
                r"table 'rmc2_table_30' accepts ids in \[0, 1000\)",
            )
        )
    dense = batch.dense.copy()
    dense[0, 3] = np.nan
    cases.append((dataclasses.replace(batch, dense=dense), r"non-finite dense feature.*nan"))
    lengths = batch.lengths.copy()
    lengths[1, 2] = 119
    cases.append((dataclasses.replace(batch, lengths=lengths), r"length 119 .* exactly 120"))
    for bad, message in cases:
        assert not valid(config, bad)
        assert __import__("re").search(message, describe_invalid_inputs(config, bad)), message


def test_padding_past_a_length_may_hold_anything_but_valid_positions_may_not():
    batch = synthetic_features(Spec, 4, seed=2)
    ids, lengths = batch.ids.copy(), batch.lengths.copy()
    column = batch.layout.columns[0]  # "history", capacity 6, table of 40 rows
    lengths[0, 0] = 2
    ids[0, column + 4] = 10_000  # padding: ignored
    assert valid(Spec, dataclasses.replace(batch, ids=ids, lengths=lengths))
    ids[0, column + 1] = 40  # valid position: out of range
    assert not valid(Spec, dataclasses.replace(batch, ids=ids, lengths=lengths))
    lengths[0, 0] = 7  # past the capacity
    assert "accepts [0, 6]" in describe_invalid_inputs(
        Spec, dataclasses.replace(batch, lengths=lengths)
    )


def test_check_batch_shapes_names_the_problem():
    config = configs.get("rmc1-tiny")
    batch = synthetic_features(config, 2, seed=0)
    check_batch_shapes(config, batch)
    with pytest.raises(ValueError, match=r"dense must have shape \['B', 128\]; got \[2, 127\]"):
        check_batch_shapes(config, dataclasses.replace(batch, dense=batch.dense[:, 1:]))
    with pytest.raises(ValueError, match="ids must be int32; got int64"):
        check_batch_shapes(config, dataclasses.replace(batch, ids=batch.ids.astype(np.int64)))
    other = configs.get("rmc2-tiny")
    with pytest.raises(ValueError, match="the model takes"):
        check_batch_shapes(other, batch)


def test_tables_and_features_validate_their_fields():
    with pytest.raises(ValueError, match="num_rows=0"):
        TableConfig("empty", 0, 8)
    with pytest.raises(ValueError, match=r"unknown dtype 'int3'"):
        TableConfig("t", 5, 8, dtype="int3")
    with pytest.raises(ValueError, match=r"unknown pooling 'max'"):
        FeatureConfig("f", "t", 3, pooling="max")
    with pytest.raises(ValueError, match="only pooled features can be weighted"):
        FeatureConfig("f", "t", 3, pooling="none", weighted=True)

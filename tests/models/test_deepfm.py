"""DeepFM against an independent NumPy forward, the FM identity, costs by hand, bad configs."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from configs.deepfm import CRITEO_KAGGLE_VOCABULARY
from recjax import native
from recjax.inputs.features import FeatureConfig, TableConfig
from recjax.inputs.synthetic import synthetic_features
from recjax.layers.embedding_bag import LOWERINGS
from recjax.models.deepfm import DeepFMConfig, one_hot_fields
from recjax.models.family import abstract_model
from recjax.models.overrides import apply_overrides
from tests.random_parameters import with_random_parameters


def numpy_tables(collection):
    """{table name: [rows, D]} cut out of the collection's stacked buffers."""
    buffers = {
        name: np.asarray(value, np.float64) for name, value in collection.table_buffers().items()
    }
    return {
        name: buffers[collection.table_group[name]][offset : offset + collection.table_rows[name]]
        for name, offset in collection.table_offset.items()
    }


def numpy_deepfm(model, batch):
    """Logits [B] from the paper's formulas, with the second-order term as an explicit pairwise
    sum over fields (not the identity the model uses)."""
    config = model.config
    dense = np.asarray(batch.dense, np.float64)
    embeddings = numpy_tables(model.sparse_arch)
    first_order_weights = embeddings  # the first-order tables are in the same collection
    sparse_fields, first_order = [], np.zeros(dense.shape[0])
    for feature in config.features:
        ids = np.asarray(batch.ids_of(feature.name))  # [B, C], every bag full
        sparse_fields.append(embeddings[feature.table][ids].sum(axis=1))  # [B, D]
        first_order += first_order_weights[feature.table + "_first_order"][ids].sum(axis=(1, 2))
    first_order += float(model.bias[...]) + dense @ np.asarray(model.dense_weight[...], np.float64)
    if config.dense_as_fields:
        vectors = np.asarray(model.dense_embedding[...], np.float64)  # [F, D]
        fields = [dense[:, j, None] * vectors[j] for j in range(config.dense_features)]
        fields += sparse_fields
        deep = np.concatenate(fields, axis=1)
    else:
        fields = sparse_fields
        deep = np.concatenate([dense, *sparse_fields], axis=1)
    second_order = sum(
        np.sum(fields[i] * fields[j], axis=1)
        for i in range(len(fields))
        for j in range(i + 1, len(fields))
    )
    layers = model.deep.layers
    for index, layer in enumerate(layers):
        deep = deep @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
        if index < len(layers) - 1:
            deep = np.maximum(deep, 0)
    return first_order + second_order + deep[:, 0]


TABLES, FEATURES = one_hot_fields((97, 13, 50, 7), dim=8)
SMALL = DeepFMConfig(
    name="small", tables=TABLES, features=FEATURES, dense_features=5, deep_mlp=(12, 6, 1)
)


@pytest.mark.parametrize(
    ("dense_as_fields", "lowering"),
    [(True, lowering) for lowering in ["auto", *sorted(LOWERINGS)]] + [(False, "auto")],
)
def test_forward_matches_numpy(dense_as_fields, lowering):
    if lowering == "native" and not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    config = dataclasses.replace(
        SMALL, dense_as_fields=dense_as_fields, embedding_lowering=lowering
    )
    model = with_random_parameters(config.build(nnx.Rngs(0)), seed=1, scale=0.3)
    batch = synthetic_features(config, 9, seed=2)
    got = jax.jit(lambda m, x: m(x))(model, batch)
    assert list(got) == ["click"] and got["click"].shape == (9,)
    np.testing.assert_allclose(got["click"], numpy_deepfm(model, batch), rtol=1e-5, atol=1e-5)
    assert np.ptp(np.asarray(got["click"])) > 0


def test_multi_hot_bags_pool_before_the_fm():
    """A bag of several ids is one field: the sum of its rows (and of its first-order weights)."""
    tables = DeepFMConfig.with_first_order_tables(
        (TableConfig("a", 40, 4), TableConfig("b", 30, 4))
    )
    features = (FeatureConfig("a", "a", capacity=3), FeatureConfig("b", "b", capacity=2))
    config = DeepFMConfig(
        name="bags", tables=tables, features=features, dense_features=2, deep_mlp=(5, 1)
    )
    model = with_random_parameters(config.build(nnx.Rngs(0)), seed=3, scale=0.3)
    batch = synthetic_features(config, 4, seed=4)
    np.testing.assert_allclose(
        jax.jit(lambda m, x: m(x))(model, batch)["click"],
        numpy_deepfm(model, batch),
        rtol=1e-5,
        atol=1e-5,
    )


def test_fm_identity_equals_the_explicit_pairwise_sum():
    model = SMALL.build(nnx.Rngs(0))
    fields = np.random.default_rng(0).standard_normal((3, 11, 8)).astype(np.float32)
    got = nnx.jit(lambda m, f: m.fm(f))(model, fields)
    explicit = [
        sum(
            float(fields[b, i].astype(np.float64) @ fields[b, j].astype(np.float64))
            for i in range(11)
            for j in range(i + 1, 11)
        )
        for b in range(3)
    ]
    np.testing.assert_allclose(got, explicit, rtol=1e-5, atol=1e-5)


def test_tiny_preset_runs_a_real_forward():
    config = configs.get("deepfm-tiny")
    model = config.build(nnx.Rngs(0))
    batch = synthetic_features(config, 3, seed=0)
    np.testing.assert_allclose(
        jax.jit(lambda m, x: m(x))(model, batch)["click"],
        numpy_deepfm(model, batch),
        rtol=2e-5,
        atol=1e-5,
    )


def test_preset_costs_by_hand():
    config = configs.get("deepfm")
    rows = sum(CRITEO_KAGGLE_VOCABULARY)
    assert rows == 33_762_577
    assert len(config.features) == 26 and config.dense_features == 13
    assert config.table_bytes == rows * 16 * 4 + rows * 4  # embeddings and first-order weights
    assert config.deep_in_features == 39 * 16 == 624
    deep_weights = 624 * 400 + 400 + 2 * (400 * 400 + 400) + 400 + 1
    dense = 13 + 13 * 16  # first-order weights and the dense fields' vectors
    assert config.parameter_bytes == config.table_bytes + 4 * (deep_weights + dense + 1)
    first_order = 2 * 13 + 26 + 1
    dense_fields = 13 * 16
    fm = 3 * 39 * 16 + 3 * 16
    deep = 2 * (624 * 400 + 400 * 400 + 400 * 400 + 400 * 1)
    assert config.dense_flops_per_sample() == first_order + dense_fields + fm + deep + 2
    assert config.dense_flops_per_sample() == 1_142_183
    assert config.embedding_bytes_per_sample == 26 * (16 * 4 + 4)
    assert config.lookups_per_sample == 52
    assert config.cost()["table_bytes"] == config.table_bytes


def test_dense_into_the_deep_input_by_override():
    config = apply_overrides(configs.get("deepfm-tiny"), ["dense_as_fields=false"])
    assert config.dense_as_fields is False
    assert config.num_fields == 26 and config.deep_in_features == 13 + 26 * 16
    assert "13 dense into the deep input" in config.architecture_summary()
    model = abstract_model(config)
    assert model.dense_embedding is None


def test_full_preset_builds_shape_only():
    config = configs.get("deepfm")
    model = abstract_model(config)
    groups = {name: table.shape for name, table in model.sparse_arch.tables.items()}
    assert groups == {"d16_float32": (33_762_577, 16), "d1_float32": (33_762_577, 1)}
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"deep_mlp": (8, 2)}, r"deep MLP must end in one unit"),
        ({"deep_mlp": ()}, r"deep_mlp must be non-empty and positive"),
        ({"tables": TABLES[:-1]}, r"'C4' needs its first-order table"),
        (
            {"tables": (*TABLES[:-1], TableConfig("C4_first_order", 7, 2))},
            r"'C4' needs its first-order table",
        ),
        ({"tables": (*TABLES, TableConfig("spare", 5, 8))}, r"tables \['spare'\] are neither"),
        (
            {"tables": (*TABLES[:2], TableConfig("C2", 13, 4), *TABLES[3:])},
            r"share one dim.*\[4, 8\]",
        ),
        (
            {"features": (*FEATURES[:-1], FeatureConfig("C4", "C4", 3, pooling="none"))},
            r"every DeepFM field is pooled; got sequence features \['C4'\]",
        ),
        ({"dense_features": -1}, r"dense_features must be >= 0"),
    ],
)
def test_invalid_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)


def test_a_model_without_dense_features():
    config = dataclasses.replace(SMALL, dense_features=0)
    model = with_random_parameters(config.build(nnx.Rngs(0)), seed=5, scale=0.3)
    batch = synthetic_features(config, 4, seed=6)
    np.testing.assert_allclose(
        jax.jit(lambda m, x: m(x))(model, batch)["click"],
        numpy_deepfm(model, batch),
        rtol=1e-5,
        atol=1e-5,
    )

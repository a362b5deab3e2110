import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax import native
from recjax.inputs.synthetic import synthetic_features
from recjax.layers.embedding_bag import LOWERINGS
from recjax.models.dlrm import DLRMConfig, one_bag_per_table
from recjax.models.family import abstract_model


def numpy_dlrm(model, batch):
    """An independent NumPy forward pass over the model's parameters: logits [B]."""
    config = model.config

    def mlp(x, layers, relu_last):
        for index, layer in enumerate(layers):
            x = x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
            if index < len(layers) - 1 or relu_last:
                x = np.maximum(x, 0)
        return x

    bottom = mlp(np.asarray(batch.dense, np.float64), model.dense_arch.layers, relu_last=True)
    (stacked,) = (np.asarray(value) for value in model.sparse_arch.table_buffers().values())
    pooled, start = [], 0
    for feature, table in zip(config.features, config.tables, strict=True):
        rows = stacked[start : start + table.num_rows]
        pooled.append(rows[np.asarray(batch.ids_of(feature.name))].sum(axis=1))  # [B, D]
        start += table.num_rows
    if config.interaction == "cat":
        features = np.concatenate([bottom, *pooled], axis=1)
    else:
        vectors = [bottom, *pooled]
        pairs = [
            np.sum(vectors[i] * vectors[j], axis=1) for i in range(len(vectors)) for j in range(i)
        ]
        features = np.concatenate([bottom, np.stack(pairs, axis=1)], axis=1)
    return mlp(features, model.over_arch.layers, relu_last=False)[:, 0]


TABLES, FEATURES = one_bag_per_table("t", count=4, num_rows=97, dim=8, pooling_factor=6)
SMALL = DLRMConfig(
    name="small",
    tables=TABLES,
    features=FEATURES,
    dense_features=13,
    bottom_mlp=(16, 8),
    top_mlp=(10, 1),
)


@pytest.mark.parametrize("interaction", ["cat", "dot"])
@pytest.mark.parametrize("lowering", ["auto", *sorted(LOWERINGS)])
def test_forward_matches_numpy(interaction, lowering):
    if lowering == "native" and not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    config = dataclasses.replace(SMALL, interaction=interaction, embedding_lowering=lowering)
    model = config.build(nnx.Rngs(0))
    batch = synthetic_features(config, 9, seed=1)
    got = jax.jit(lambda m, x: m(x))(model, batch)
    assert list(got) == ["click"] and got["click"].shape == (9,)
    np.testing.assert_allclose(got["click"], numpy_dlrm(model, batch), rtol=1e-5, atol=1e-5)
    assert np.ptp(np.asarray(got["click"])) > 0, "different samples should get different logits"


@pytest.mark.parametrize("name", ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"])
def test_tiny_presets_run_a_real_forward(name):
    config = configs.get(name)
    model = config.build(nnx.Rngs(0))
    batch = synthetic_features(config, 3, seed=0)
    got = np.asarray(model(batch)["click"])
    np.testing.assert_allclose(got, numpy_dlrm(model, batch), rtol=2e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["rmc1", "rmc2", "rmc3"])
def test_full_presets_build_shape_only(name):
    config = configs.get(name)
    model = abstract_model(config)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    total_rows = sum(table.num_rows for table in config.tables)
    (group,) = model.sparse_arch.tables.values()
    assert group.shape == (total_rows, config.embedding_dim)


def test_preset_costs_by_hand():
    rmc2, rmc3, rmc1 = configs.get("rmc2"), configs.get("rmc3"), configs.get("rmc1")
    assert rmc2.table_bytes == 32 * 500_000 * 64 * 4
    assert rmc2.embedding_bytes_per_sample == 32 * 120 * 64 * 4  # about 1 MB
    assert rmc2.top_mlp_in_features == 64 + 32 * 64
    assert rmc1.top_mlp_in_features == 32 + 8 * 32
    # RMC3: 2560-1024-256-32 bottom, (32 + 10 * 32)-512-256-1 top: about 6.4 MFLOP.
    bottom = 2560 * 1024 + 1024 * 256 + 256 * 32
    top = 352 * 512 + 512 * 256 + 256 * 1
    assert rmc3.dense_flops_per_sample() == 2 * (bottom + top) == 6_406_656
    weights = 2560 * 1024 + 1024 + 1024 * 256 + 256 + 256 * 32 + 32
    weights += 352 * 512 + 512 + 512 * 256 + 256 + 256 + 1
    assert rmc3.parameter_bytes == rmc3.table_bytes + 4 * weights


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"top_mlp": (8, 2)}, r"end in one unit"),
        ({"interaction": "outer"}, r"Unknown interaction 'outer'"),
        ({"interaction": "dot", "bottom_mlp": (16, 4)}, r"\(4\) to equal the embedding dim \(8\)"),
        ({"embedding_lowering": "magic"}, r"'magic'"),
        ({"dense_features": 0}, r"needs dense features"),
        ({"bottom_mlp": ()}, r"non-empty"),
        ({"tables": TABLES[:3]}, r"feature 't_3' names table 't_3', which does not exist"),
        (
            {"features": (*FEATURES, FEATURES[0])},
            r"feature names must be unique; repeated: \['t_0'",
        ),
    ],
)
def test_invalid_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax import native
from recjax.inputs.data import synthetic_batch
from recjax.layers.embedding_bag import LOWERINGS
from recjax.models.dlrm import DLRM, DLRMConfig, abstract_model, uniform_tables


def numpy_dlrm(model: DLRM, dense, sparse_ids):
    """An independent NumPy forward pass over the model's parameters."""
    config = model.config

    def mlp(x, layers, relu_last):
        for index, layer in enumerate(layers):
            x = x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
            if index < len(layers) - 1 or relu_last:
                x = np.maximum(x, 0)
        return x

    bottom = mlp(dense, model.dense_arch.layers, relu_last=True)
    stacked = np.asarray(model.sparse_arch.weight[...])
    start, pooled = 0, []
    for t, table in enumerate(config.tables):
        rows = stacked[start : start + table.num_rows]
        pooled.append(rows[sparse_ids[:, t, :]].sum(axis=1))  # [B, D]
        start += table.num_rows
    if config.interaction == "cat":
        features = np.concatenate([bottom, *pooled], axis=1)
    else:
        vectors = [bottom, *pooled]
        pairs = [
            np.sum(vectors[i] * vectors[j], axis=1) for i in range(len(vectors)) for j in range(i)
        ]
        features = np.concatenate([bottom, np.stack(pairs, axis=1)], axis=1)
    logits = mlp(features, model.over_arch.layers, relu_last=False)[:, 0]
    return 1 / (1 + np.exp(-logits))


SMALL = DLRMConfig(
    name="small",
    dense_features=13,
    bottom_mlp=(16, 8),
    tables=uniform_tables("t", count=4, num_rows=97, dim=8),
    pooling_factor=6,
    top_mlp=(10, 1),
)


@pytest.mark.parametrize("interaction", ["cat", "dot"])
@pytest.mark.parametrize("lowering", ["auto", *sorted(LOWERINGS)])
def test_forward_matches_numpy(interaction, lowering):
    if lowering == "native" and not native.availability()[0]:
        pytest.skip(f"native library unavailable: {native.availability()[1]}")
    config = dataclasses.replace(SMALL, interaction=interaction, embedding_lowering=lowering)
    model = DLRM(config, rngs=nnx.Rngs(0))
    batch = synthetic_batch(config, 9, seed=1)
    got = jax.jit(lambda m, d, s: m(d, s))(model, batch.dense, batch.sparse_ids)
    expected = numpy_dlrm(model, batch.dense.astype(np.float64), batch.sparse_ids)
    assert got.shape == (9,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(np.asarray(got)) > 0, "different samples should get different probabilities"


@pytest.mark.parametrize("name", ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"])
def test_tiny_presets_run_a_real_forward(name):
    config = configs.get(name)
    model = DLRM(config, rngs=nnx.Rngs(0))
    batch = synthetic_batch(config, 3, seed=0)
    got = np.asarray(model(batch.dense, batch.sparse_ids))
    np.testing.assert_allclose(got, numpy_dlrm(model, batch.dense, batch.sparse_ids), rtol=2e-5)
    assert np.all((got > 0) & (got < 1))


@pytest.mark.parametrize("name", ["rmc1", "rmc2", "rmc3"])
def test_full_presets_build_shape_only(name):
    config = configs.get(name)
    model = abstract_model(config)
    params = nnx.state(model, nnx.Param)
    leaves = jax.tree.leaves(params)
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    total_rows = sum(table.num_rows for table in config.tables)
    assert model.sparse_arch.weight.shape == (total_rows, config.embedding_dim)
    counted = sum(int(np.prod(leaf.shape)) * 4 for leaf in leaves)
    assert counted == config.parameter_bytes


def test_preset_costs_by_hand():
    rmc2, rmc3, rmc1 = configs.get("rmc2"), configs.get("rmc3"), configs.get("rmc1")
    assert rmc2.table_bytes == 32 * 500_000 * 64 * 4
    assert rmc2.embedding_bytes_per_sample == 32 * 120 * 64 * 4  # about 1 MB
    assert rmc2.top_mlp_in_features == 64 + 32 * 64
    assert rmc1.top_mlp_in_features == 32 + 8 * 32
    # RMC3: 2560-1024-256-32 bottom, (32 + 10 * 32)-512-256-1 top: about 6.4 MFLOP.
    bottom = 2560 * 1024 + 1024 * 256 + 256 * 32
    top = 352 * 512 + 512 * 256 + 256 * 1
    assert rmc3.fc_flops_per_sample == 2 * (bottom + top) == 6_406_656


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"top_mlp": (8, 2)}, r"end in one unit"),
        ({"interaction": "outer"}, r"unknown interaction 'outer'"),
        ({"interaction": "dot", "bottom_mlp": (16, 4)}, r"\(4\) to equal the embedding dim \(8\)"),
        ({"embedding_lowering": "magic"}, r"'magic'"),
        ({"pooling_factor": 0}, r"must be positive"),
        ({"bottom_mlp": ()}, r"non-empty"),
    ],
)
def test_invalid_configs_are_named(change, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(SMALL, **change)

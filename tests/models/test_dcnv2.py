"""DCN-V2 (DLRM-v2) against an independent NumPy forward; costs by hand; overrides; bad configs;
the full preset only by shape, and refused by the memory check before anything is built."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from configs.dcnv2 import CRITEO_1TB_VOCABULARY, MULTI_HOT_SIZES
from recjax.bench import colocation
from recjax.inputs.synthetic import synthetic_features
from recjax.models.dcnv2 import DCNv2Config, multi_hot_bags
from recjax.models.family import abstract_model
from recjax.models.overrides import apply_overrides
from recjax.runtime.memory import (
    GIB,
    InsufficientMemoryError,
    available_memory_bytes,
    check_memory,
    estimated_peak_bytes,
)
from tests.binaries.binary import run_binary
from tests.random_parameters import with_random_parameters


def numpy_dcnv2(model, batch):
    """Logits [B]: bottom MLP (ReLU after every layer), sum bags, x_0 = [bottom, e_1, ..., e_T],
    x_{l+1} = x_0 * (U_l (V_l x_l) + b_l) + x_l, top MLP (ReLU between layers)."""
    config = model.config
    collection = model.sparse_arch
    buffers = {
        name: np.asarray(value, np.float64) for name, value in collection.table_buffers().items()
    }

    def mlp(x, layers, relu_last):
        for index, layer in enumerate(layers):
            x = x @ np.asarray(layer.kernel[...]) + np.asarray(layer.bias[...])
            if index < len(layers) - 1 or relu_last:
                x = np.maximum(x, 0)
        return x

    bottom = mlp(np.asarray(batch.dense, np.float64), model.dense_arch.layers, relu_last=True)
    pooled = []
    for feature in config.features:
        offset = collection.table_offset[feature.table]
        rows = buffers[collection.table_group[feature.table]]
        ids = np.asarray(batch.ids_of(feature.name)) + offset  # [B, C], every bag full
        pooled.append(rows[ids].sum(axis=1))
    x0 = np.concatenate([bottom, *pooled], axis=1)
    x = x0
    for layer in model.interaction.layers:
        u, v, b = (np.asarray(p[...], np.float64) for p in (layer.U, layer.V, layer.bias))
        x = x0 * ((x @ v.T) @ u.T + b) + x
    return mlp(x, model.over_arch.layers, relu_last=False)[:, 0]


TABLES, FEATURES = multi_hot_bags((97, 13, 50), (2, 1, 4), dim=6)
SMALL = DCNv2Config(
    name="small",
    tables=TABLES,
    features=FEATURES,
    dense_features=5,
    bottom_mlp=(9, 6),
    top_mlp=(7, 1),
    cross_layers=2,
    cross_rank=3,
)


@pytest.mark.parametrize("lowering", ["auto", "gather_sum"])
def test_forward_matches_numpy(lowering):
    config = dataclasses.replace(SMALL, embedding_lowering=lowering)
    model = with_random_parameters(config.build(nnx.Rngs(0)), seed=1, scale=0.3)
    batch = synthetic_features(config, 7, seed=2)
    got = jax.jit(lambda m, x: m(x))(model, batch)
    assert list(got) == ["click"] and got["click"].shape == (7,)
    np.testing.assert_allclose(got["click"], numpy_dcnv2(model, batch), rtol=1e-5, atol=1e-5)
    assert np.ptp(np.asarray(got["click"])) > 0


def test_tiny_preset_runs_a_real_forward():
    config = configs.get("dcnv2-tiny")
    model = config.build(nnx.Rngs(0))
    batch = synthetic_features(config, 3, seed=0)
    got = jax.jit(lambda m, x: m(x))(model, batch)["click"]
    np.testing.assert_allclose(got, numpy_dcnv2(model, batch), rtol=1e-4, atol=1e-5)


def test_presets_match_mlperf_dlrm_v2():
    full, capped = configs.get("dcnv2-full"), configs.get("dcnv2")
    for config in (full, capped):
        assert (config.dense_features, config.bottom_mlp) == (13, (512, 256, 128))
        assert config.top_mlp == (1024, 1024, 512, 256, 1)
        assert (config.interaction, config.cross_layers, config.cross_rank) == ("cross", 3, 512)
        assert [feature.capacity for feature in config.features] == list(MULTI_HOT_SIZES)
        assert {table.dim for table in config.tables} == {128}
        assert all(feature.fixed_length and feature.pooling == "sum" for feature in config.features)
    assert [table.num_rows for table in full.tables] == list(CRITEO_1TB_VOCABULARY)
    assert [table.num_rows for table in capped.tables] == [
        min(rows, 1_000_000) for rows in CRITEO_1TB_VOCABULARY
    ]
    assert [table.name for table in full.tables][:2] == ["t_cat_0", "t_cat_1"]


def test_preset_costs_by_hand():
    full, capped = configs.get("dcnv2-full"), configs.get("dcnv2")
    assert sum(CRITEO_1TB_VOCABULARY) == 204_184_588
    assert full.table_bytes == 204_184_588 * 128 * 4  # about 104.5 GB
    capped_rows = sum(min(rows, 1_000_000) for rows in CRITEO_1TB_VOCABULARY)
    assert capped_rows == 7_116_632
    assert capped.table_bytes == capped_rows * 128 * 4
    width = 128 + 26 * 128
    assert full.top_mlp_in_features == width == 3456
    bottom = 13 * 512 + 512 * 256 + 256 * 128
    top = 3456 * 1024 + 1024 * 1024 + 1024 * 512 + 512 * 256 + 256 * 1
    cross = 3 * (4 * width * 512 + 3 * width)
    assert full.dense_flops_per_sample() == 2 * (bottom + top) + cross == 32_092_032
    weights = bottom + (512 + 256 + 128) + top + (1024 + 1024 + 512 + 256 + 1)
    weights += 3 * (2 * width * 512 + width)  # U, V and b of three cross layers
    assert full.parameter_bytes == full.table_bytes + 4 * weights
    assert capped.parameter_bytes == capped.table_bytes + 4 * weights
    assert full.embedding_bytes_per_sample == sum(MULTI_HOT_SIZES) * 128 * 4
    assert full.lookups_per_sample == sum(MULTI_HOT_SIZES) == 214


def test_full_preset_builds_shape_only():
    config = configs.get("dcnv2-full")
    model = abstract_model(config)
    leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
    assert all(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in leaves)
    (group,) = model.sparse_arch.tables.values()
    assert group.shape == (204_184_588, 128)
    assert [layer.U.shape for layer in model.interaction.layers] == [(3456, 512)] * 3


def test_cross_network_fields_are_overridable():
    config = apply_overrides(configs.get("dcnv2-tiny"), ["cross_rank=64", "cross_layers=2"])
    assert (config.cross_rank, config.cross_layers) == (64, 2)
    assert "cross network (layers=2, rank=64) over 3456" in config.architecture_summary()
    model = abstract_model(config)
    assert [(layer.U.shape, layer.V.shape) for layer in model.interaction.layers] == [
        ((3456, 64), (64, 3456))
    ] * 2
    assert config.dense_flops_per_sample() == configs.get(
        "dcnv2-tiny"
    ).dense_flops_per_sample() - 3 * (4 * 3456 * 512 + 3 * 3456) + 2 * (4 * 3456 * 64 + 3 * 3456)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["cross_layers=0"], r"at least one layer.*num_layers=0"),
        (["cross_rank=0"], r"rank of at least 1.*rank=0"),
        (["interaction=cat"], r"a DCN-V2 model's interaction is 'cross'; got interaction='cat'"),
        (["cross_rank=wide"], r"cross_rank='wide'; cross_rank takes an integer"),
        (["top_mlp=8,2"], r"end in one unit"),
    ],
)
def test_bad_overrides_are_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(configs.get("dcnv2-tiny"), overrides)


def test_a_dlrm_cannot_take_the_cross_interaction_without_its_options():
    with pytest.raises(
        ValueError, match=r"'cross' interaction takes the options \['num_layers', 'rank'\].*DCNv2"
    ):
        apply_overrides(configs.get("rmc2-tiny"), ["interaction=cross"])


def test_mismatched_pooling_sizes_are_refused():
    with pytest.raises(ValueError, match=r"one pooling size per table; got 3 tables and 2"):
        multi_hot_bags((5, 6, 7), (1, 2), dim=4)


def test_smaller_presets_name_the_declared_variant_first():
    assert configs.smaller_presets("dcnv2-full") == ["dcnv2", "dcnv2-full-tiny"]
    assert configs.smaller_presets("dcnv2") == ["dcnv2-tiny"]
    assert configs.smaller_presets("rmc2") == ["rmc2-tiny"]
    assert configs.smaller_presets("rmc2-tiny") == []


def test_memory_check_refuses_the_full_preset_naming_bytes_and_alternatives():
    config = configs.get("dcnv2-full")
    needed = estimated_peak_bytes(config, 64)
    with pytest.raises(InsufficientMemoryError) as error:
        check_memory(config, 64, configs.smaller_presets(config.name), available_bytes=24 * GIB)
    message = str(error.value)
    assert f"dcnv2-full at batch size 64 needs about {needed / GIB:.1f} GiB" in message
    assert f"({config.parameter_bytes / GIB:.1f} GiB of parameters)" in message
    assert "only 24.0 GiB of memory is available" in message
    assert "Try a smaller preset: dcnv2, dcnv2-full-tiny." in message
    assert "sharded over several machines" in message
    # The capped preset fits where the full one does not, and needs no sharding.
    capped = configs.get("dcnv2")
    assert check_memory(capped, 64, [], available_bytes=24 * GIB) < 24 * GIB


def test_latency_binary_refuses_the_full_preset_before_building():
    config = configs.get("dcnv2-full")
    if available_memory_bytes() > 2 * estimated_peak_bytes(config, 1024):
        pytest.skip("this machine could hold dcnv2-full: the refusal cannot be tested here")
    result = run_binary("latency", "--model=dcnv2-full", timeout=300)
    assert result.returncode != 0
    assert "dcnv2-full at batch size 1024 needs about" in result.stderr
    assert "Try a smaller preset: dcnv2, dcnv2-full-tiny." in result.stderr
    assert "sharded over several machines" in result.stderr
    assert "built the model" not in result.stdout


def test_colocation_memory_check_names_the_smaller_presets_and_sharding():
    config = configs.get("dcnv2-full")
    with pytest.raises(InsufficientMemoryError) as error:
        colocation.check_memory(
            config, 2, 16, available_bytes=24 * GIB, smaller_presets=["dcnv2", "dcnv2-full-tiny"]
        )
    message = str(error.value)
    assert "2 instances of dcnv2-full need about" in message
    assert "only 24.0 GiB of memory is available" in message
    assert "Not even one instance fits; try a smaller preset: dcnv2, dcnv2-full-tiny." in message
    assert "sharded over several machines" in message

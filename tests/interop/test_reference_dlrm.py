"""State dicts in the reference DLRM's layout: export, import, round trip, hand-built values."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.features import FeatureConfig, TableConfig, make_features
from recjax.inputs.synthetic import synthetic_features
from recjax.interop.reference_dlrm import (
    StateDictMismatchError,
    expected_shapes,
    export_reference_state_dict,
    import_reference_state_dict,
)
from recjax.models.dlrm import DLRMConfig, one_bag_per_table
from recjax.models.family import abstract_model
from recjax.runtime.inference import CompiledPredictor

# Three tables of 4 dims; the features read them in the order b, a, c, so emb_l.<k> (the table of
# feature k) is not the config's table k.
SMALL = DLRMConfig(
    name="small",
    tables=(TableConfig("a", 11, 4), TableConfig("b", 13, 4), TableConfig("c", 3, 4)),
    features=(
        FeatureConfig("fb", "b", capacity=3),
        FeatureConfig("fa", "a", capacity=2),
        FeatureConfig("fc", "c", capacity=3),
    ),
    dense_features=5,
    bottom_mlp=(7, 4),
    top_mlp=(6, 1),
)


@pytest.mark.parametrize("interaction", ["cat", "dot"])
def test_export_has_reference_keys_shapes_and_values(interaction):
    config = dataclasses.replace(SMALL, interaction=interaction)
    model = config.build(nnx.Rngs(0))
    state_dict = export_reference_state_dict(model)
    top_in = {"cat": 4 + 3 * 4, "dot": 4 + 6}[interaction]
    assert {key: value.shape for key, value in state_dict.items()} == {
        "emb_l.0.weight": (13, 4),
        "emb_l.1.weight": (11, 4),
        "emb_l.2.weight": (3, 4),
        "bot_l.0.weight": (7, 5),
        "bot_l.0.bias": (7,),
        "bot_l.2.weight": (4, 7),
        "bot_l.2.bias": (4,),
        "top_l.0.weight": (6, top_in),
        "top_l.0.bias": (6,),
        "top_l.2.weight": (1, 6),
        "top_l.2.bias": (1,),
    }
    # One group, the tables stacked in config order: a at rows 0-10, b at 11-23, c at 24-26.
    (stacked,) = (np.asarray(buffer) for buffer in model.sparse_arch.table_buffers().values())
    assert stacked.shape == (27, 4)
    np.testing.assert_array_equal(state_dict["emb_l.0.weight"], stacked[11:24])
    np.testing.assert_array_equal(state_dict["emb_l.1.weight"], stacked[0:11])
    np.testing.assert_array_equal(state_dict["emb_l.2.weight"], stacked[24:27])
    kernel = np.asarray(model.over_arch.layers[0].kernel[...])
    np.testing.assert_array_equal(state_dict["top_l.0.weight"], kernel.T)
    np.testing.assert_array_equal(
        state_dict["bot_l.2.bias"], np.asarray(model.dense_arch.layers[1].bias[...])
    )


@pytest.mark.parametrize("interaction", ["cat", "dot"])
@pytest.mark.parametrize("config", [configs.get("rmc1-tiny"), SMALL], ids=["rmc1-tiny", "small"])
def test_round_trip_gives_identical_parameters_and_predictions(config, interaction):
    config = dataclasses.replace(config, interaction=interaction)
    model = config.build(nnx.Rngs(3))
    imported = import_reference_state_dict(config, export_reference_state_dict(model))
    assert imported.config == config
    original_leaves = jax.tree.leaves_with_path(nnx.state(model))
    imported_leaves = jax.tree.leaves_with_path(nnx.state(imported))
    assert [path for path, _ in imported_leaves] == [path for path, _ in original_leaves]
    for (path, expected), (_, got) in zip(original_leaves, imported_leaves, strict=True):
        assert got.dtype == expected.dtype, path
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=str(path))
    batch = synthetic_features(config, 8, seed=5)
    np.testing.assert_array_equal(
        np.asarray(CompiledPredictor(imported, [8])(batch)["click"]),
        np.asarray(CompiledPredictor(model, [8])(batch)["click"]),
    )


# A model small enough to compute by hand: dense x = [2, 3], two tables of 3 rows x 2 dims, two
# lookups per table, one bottom layer (2 -> 2) and one top layer (-> 1).
HAND_TABLES, HAND_FEATURES = one_bag_per_table("t", count=2, num_rows=3, dim=2, pooling_factor=2)
HAND = DLRMConfig(
    name="hand",
    tables=HAND_TABLES,
    features=HAND_FEATURES,
    dense_features=2,
    bottom_mlp=(2,),
    top_mlp=(1,),
)
HAND_COMMON = {
    "bot_l.0.weight": np.array([[1.0, 0.0], [0.5, -1.0]]),  # [out, in]
    "bot_l.0.bias": np.array([0.5, 0.5]),
    "emb_l.0.weight": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
    "emb_l.1.weight": np.array([[-1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]),
}
HAND_BATCH = make_features(
    np.array([[2.0, 3.0]], np.float32),
    {"t_0": (np.array([[0, 2]]), np.array([2])), "t_1": (np.array([[1, 1]]), np.array([2]))},
    HAND_FEATURES,
)
# Bottom: relu([2 + 0.5, 1 - 3 + 0.5]) = [2.5, 0].
# Bags: table 0 rows 0 + 2 = [6, 8]; table 1 rows 1 + 1 = [0, 2].
# cat: features [2.5, 0, 6, 8, 0, 2];
#   logit = 0.25 + 0 - 0.6 + 0.4 + 0 - 0.4 - 0.1 = -0.45.
# dot: z0 = [2.5, 0], z1 = [6, 8], z2 = [0, 2]; pairs (1,0) = 15, (2,0) = 0, (2,1) = 16;
#   features [2.5, 0, 15, 0, 16]; logit = 0.25 + 0 + 0.15 + 0 - 0.32 + 0 = 0.08.
HAND_CASES = {
    "cat": ([[0.1, 0.2, -0.1, 0.05, 0.3, -0.2]], [-0.1], -0.45),
    "dot": ([[0.1, 0.2, 0.01, 0.3, -0.02]], [0.0], 0.08),
}


@pytest.mark.parametrize("interaction", ["cat", "dot"])
def test_import_of_a_hand_built_state_dict(interaction):
    top_weight, top_bias, logit = HAND_CASES[interaction]
    state_dict = {
        **HAND_COMMON,
        "top_l.0.weight": np.array(top_weight),  # float64: converted to float32 on import
        "top_l.0.bias": np.array(top_bias),
    }
    config = dataclasses.replace(HAND, interaction=interaction)
    model = import_reference_state_dict(config, state_dict)
    got = CompiledPredictor(model, [1])(HAND_BATCH)
    assert set(got) == {"click"}
    np.testing.assert_allclose(np.asarray(got["click"]), [1 / (1 + np.exp(-logit))], rtol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(model.dense_arch.layers[0].kernel[...]), [[1.0, 0.5], [0.0, -1.0]]
    )  # kernel [in, out] = W^T
    np.testing.assert_array_equal(
        np.asarray(model.over_arch.layers[0].kernel[...])[:, 0], np.float32(top_weight[0])
    )
    assert list(model.sparse_arch.table_buffers()) == ["d2_float32"]
    np.testing.assert_array_equal(
        np.asarray(model.sparse_arch.tables["d2_float32"][...]),
        np.concatenate([HAND_COMMON["emb_l.0.weight"], HAND_COMMON["emb_l.1.weight"]]),
    )


def _small_state_dict():
    return export_reference_state_dict(SMALL.build(nnx.Rngs(0)))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda sd: sd.pop("bot_l.2.bias"),
            r"lacks 1 key\(s\).*'bot_l\.2\.bias' \(expected shape \[4\]\)",
        ),
        (
            lambda sd: sd.update({"emb_l.3.weight": np.zeros((5, 4), np.float32)}),
            r"does not have; the first is 'emb_l\.3\.weight' \(shape \[5, 4\]\)",
        ),
        (
            lambda sd: sd.update({"emb_l.0.weight": np.zeros((11, 4), np.float32)}),
            r"'emb_l\.0\.weight' has shape \[11, 4\], but the preset expects \[13, 4\]",
        ),
        (
            lambda sd: sd.update({"bot_l.0.weight": np.zeros((5, 7), np.float32)}),
            r"'bot_l\.0\.weight' has shape \[5, 7\], but the preset expects \[7, 5\]",
        ),
        (
            lambda sd: sd.update({"top_l.2.bias": np.zeros((1,), np.int64)}),
            r"'top_l\.2\.bias' has dtype int64; expected a floating-point array",
        ),
    ],
)
def test_a_state_dict_that_does_not_fit_is_refused(edit, message):
    state_dict = _small_state_dict()
    edit(state_dict)
    with pytest.raises(StateDictMismatchError, match=message):
        import_reference_state_dict(SMALL, state_dict)


def test_a_table_shared_by_two_features_has_no_reference_layout():
    config = dataclasses.replace(
        SMALL,
        features=(*SMALL.features, FeatureConfig("fa_again", "a", capacity=1)),
    )
    message = r"one table per sparse feature; tables read by several features: \{'a': \['fa', "
    with pytest.raises(ValueError, match=message):
        expected_shapes(config)
    with pytest.raises(ValueError, match=message):
        export_reference_state_dict(config.build(nnx.Rngs(0)))


@pytest.mark.parametrize("name", ["rmc1", "rmc2", "rmc3"])
def test_full_preset_keys_map_onto_the_model_shapes(name):
    """Shape-only (jax.eval_shape): every reference key of a full preset fits a model parameter."""
    config = configs.get(name)
    model = abstract_model(config)
    shapes = expected_shapes(config)
    num_layers = len(config.bottom_mlp) + len(config.top_mlp)
    assert len(shapes) == len(config.features) + 2 * num_layers
    sparse_arch = model.sparse_arch
    total_rows = {}
    for index, feature in enumerate(config.features):
        rows, dim = shapes[f"emb_l.{index}.weight"]
        assert sparse_arch.table_rows[feature.table] == rows
        group = sparse_arch.table_group[feature.table]
        assert sparse_arch.tables[group].shape[1] == dim
        total_rows[group] = total_rows.get(group, 0) + rows
    assert {group: table.shape[0] for group, table in sparse_arch.tables.items()} == total_rows
    for attribute, prefix in (("dense_arch", "bot_l"), ("over_arch", "top_l")):
        for index, layer in enumerate(getattr(model, attribute).layers):
            assert shapes[f"{prefix}.{2 * index}.weight"] == layer.kernel.shape[::-1]
            assert shapes[f"{prefix}.{2 * index}.bias"] == layer.bias.shape

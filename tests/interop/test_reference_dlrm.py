"""State dicts in the reference DLRM's layout: export, import, round trip, hand-built values."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.data import Batch, synthetic_batch
from recjax.interop.reference_dlrm import (
    StateDictMismatchError,
    expected_shapes,
    export_reference_state_dict,
    import_reference_state_dict,
)
from recjax.layers.embedding_bag import EmbeddingTableConfig
from recjax.models.dlrm import DLRM, DLRMConfig, abstract_model, uniform_tables
from recjax.runtime.inference import CompiledPredictor

SMALL = DLRMConfig(
    name="small",
    dense_features=5,
    bottom_mlp=(7, 4),
    tables=(
        EmbeddingTableConfig("a", 11, 4),
        EmbeddingTableConfig("b", 13, 4),
        EmbeddingTableConfig("c", 3, 4),
    ),
    pooling_factor=3,
    top_mlp=(6, 1),
)


@pytest.mark.parametrize("interaction", ["cat", "dot"])
def test_export_has_reference_keys_shapes_and_values(interaction):
    config = dataclasses.replace(SMALL, interaction=interaction)
    model = DLRM(config, rngs=nnx.Rngs(0))
    state_dict = export_reference_state_dict(model)
    top_in = {"cat": 4 + 3 * 4, "dot": 4 + 6}[interaction]
    assert {key: value.shape for key, value in state_dict.items()} == {
        "emb_l.0.weight": (11, 4),
        "emb_l.1.weight": (13, 4),
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
    stacked = np.asarray(model.sparse_arch.weight[...])
    np.testing.assert_array_equal(state_dict["emb_l.1.weight"], stacked[11:24])
    np.testing.assert_array_equal(state_dict["emb_l.2.weight"], stacked[24:27])
    kernel = np.asarray(model.over_arch.layers[0].kernel[...])
    np.testing.assert_array_equal(state_dict["top_l.0.weight"], kernel.T)
    np.testing.assert_array_equal(
        state_dict["bot_l.2.bias"], np.asarray(model.dense_arch.layers[1].bias[...])
    )


@pytest.mark.parametrize("interaction", ["cat", "dot"])
def test_round_trip_gives_identical_parameters_and_predictions(interaction):
    config = dataclasses.replace(configs.get("rmc1-tiny"), interaction=interaction)
    model = DLRM(config, rngs=nnx.Rngs(3))
    imported = import_reference_state_dict(config, export_reference_state_dict(model))
    original_leaves = jax.tree.leaves_with_path(nnx.state(model))
    imported_leaves = jax.tree.leaves_with_path(nnx.state(imported))
    assert [path for path, _ in imported_leaves] == [path for path, _ in original_leaves]
    for (path, expected), (_, got) in zip(original_leaves, imported_leaves, strict=True):
        assert got.dtype == expected.dtype, path
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected), err_msg=str(path))
    batch = synthetic_batch(config, 8, seed=5)
    np.testing.assert_array_equal(
        np.asarray(CompiledPredictor(imported, [8])(batch)),
        np.asarray(CompiledPredictor(model, [8])(batch)),
    )


# A model small enough to compute by hand: dense x = [2, 3], two tables of 3 rows x 2 dims, two
# lookups per table, one bottom layer (2 -> 2) and one top layer (-> 1).
HAND = DLRMConfig(
    name="hand",
    dense_features=2,
    bottom_mlp=(2,),
    tables=uniform_tables("t", count=2, num_rows=3, dim=2),
    pooling_factor=2,
    top_mlp=(1,),
)
HAND_COMMON = {
    "bot_l.0.weight": np.array([[1.0, 0.0], [0.5, -1.0]]),  # [out, in]
    "bot_l.0.bias": np.array([0.5, 0.5]),
    "emb_l.0.weight": np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]),
    "emb_l.1.weight": np.array([[-1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]),
}
HAND_BATCH = Batch(
    dense=np.array([[2.0, 3.0]], np.float32),
    sparse_ids=np.array([[[0, 2], [1, 1]]], np.int32),
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
    np.testing.assert_allclose(np.asarray(got), [1 / (1 + np.exp(-logit))], rtol=1e-6)
    np.testing.assert_array_equal(
        np.asarray(model.dense_arch.layers[0].kernel[...]), [[1.0, 0.5], [0.0, -1.0]]
    )  # kernel [in, out] = W^T
    np.testing.assert_array_equal(
        np.asarray(model.over_arch.layers[0].kernel[...])[:, 0], np.float32(top_weight[0])
    )
    np.testing.assert_array_equal(
        np.asarray(model.sparse_arch.weight[...]),
        np.concatenate([HAND_COMMON["emb_l.0.weight"], HAND_COMMON["emb_l.1.weight"]]),
    )


def _small_state_dict():
    return export_reference_state_dict(DLRM(SMALL, rngs=nnx.Rngs(0)))


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
            lambda sd: sd.update({"emb_l.1.weight": np.zeros((12, 4), np.float32)}),
            r"'emb_l\.1\.weight' has shape \[12, 4\], but the preset expects \[13, 4\]",
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


@pytest.mark.parametrize("name", ["rmc1", "rmc2", "rmc3"])
def test_full_preset_keys_map_onto_the_model_shapes(name):
    """Shape-only (jax.eval_shape): every reference key of a full preset fits a model parameter."""
    config = configs.get(name)
    model = abstract_model(config)
    shapes = expected_shapes(config)
    assert len(shapes) == config.num_tables + 2 * (len(config.bottom_mlp) + len(config.top_mlp))
    total_rows = sum(shapes[f"emb_l.{t}.weight"][0] for t in range(config.num_tables))
    assert model.sparse_arch.weight.shape == (total_rows, config.embedding_dim)
    for attribute, prefix in (("dense_arch", "bot_l"), ("over_arch", "top_l")):
        for index, layer in enumerate(getattr(model, attribute).layers):
            assert shapes[f"{prefix}.{2 * index}.weight"] == layer.kernel.shape[::-1]
            assert shapes[f"{prefix}.{2 * index}.bias"] == layer.bias.shape

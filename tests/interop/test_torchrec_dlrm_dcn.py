"""TorchRec DLRM_DCN state dicts: written by hand here, imported, exported bit for bit, and run
with TorchRec's forward semantics (an independent NumPy forward in TorchRec's module order)."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.synthetic import synthetic_features
from recjax.interop.reference_dlrm import StateDictMismatchError
from recjax.interop.torchrec_dlrm_dcn import (
    check_layout,
    expected_shapes,
    export_torchrec_state_dict,
    import_torchrec_state_dict,
    torchrec_table_order,
)
from recjax.models.dcnv2 import DCNv2Config, multi_hot_bags

D = 4
ROWS = (11, 7, 5)
TABLES, FEATURES = multi_hot_bags(ROWS, (2, 1, 3), dim=D)
CONFIG = DCNv2Config(
    name="small",
    tables=TABLES,
    features=FEATURES,
    dense_features=3,
    bottom_mlp=(6, D),
    top_mlp=(5, 2, 1),
    cross_layers=2,
    cross_rank=3,
)
N = (len(ROWS) + 1) * D  # the cross network's width: 16


def hand_written_state_dict(seed=0):
    """The keys and shapes of TorchRec's DLRM_DCN for CONFIG, written out from its source."""
    rng = np.random.default_rng(seed)

    def draw(*shape):
        return rng.uniform(-0.5, 0.5, shape).astype(np.float32)

    state = {}
    for index, rows in enumerate(ROWS):
        state[f"sparse_arch.embedding_bag_collection.embedding_bags.t_cat_{index}.weight"] = draw(
            rows, D
        )
    state["dense_arch.model._mlp.0._linear.weight"] = draw(6, 3)
    state["dense_arch.model._mlp.0._linear.bias"] = draw(6)
    state["dense_arch.model._mlp.1._linear.weight"] = draw(D, 6)
    state["dense_arch.model._mlp.1._linear.bias"] = draw(D)
    for layer in range(2):
        state[f"inter_arch.crossnet.W_kernels.{layer}"] = draw(N, 3)
    for layer in range(2):
        state[f"inter_arch.crossnet.V_kernels.{layer}"] = draw(3, N)
    for layer in range(2):
        state[f"inter_arch.crossnet.bias.{layer}"] = draw(N)
    state["over_arch.model.0._mlp.0._linear.weight"] = draw(5, N)
    state["over_arch.model.0._mlp.0._linear.bias"] = draw(5)
    state["over_arch.model.0._mlp.1._linear.weight"] = draw(2, 5)
    state["over_arch.model.0._mlp.1._linear.bias"] = draw(2)
    state["over_arch.model.1.weight"] = draw(1, 2)
    state["over_arch.model.1.bias"] = draw(1)
    return state


def relu(x):
    return np.maximum(x, 0)


def torchrec_forward(state, dense, sparse_ids):
    """DLRM_DCN.forward in NumPy, module by module: logits [B, 1].

    dense_arch (torchrec MLP: ReLU after every Perceptron), sparse_arch (EmbeddingBagCollection,
    sum pooling, features table by table), inter_arch (cat(dense.unsqueeze(1), sparse) reshaped
    to [B, (T + 1) D], then LowRankCrossNet), over_arch (MLP then nn.Linear).
    """
    s = {key: np.asarray(value, np.float64) for key, value in state.items()}
    x = np.asarray(dense, np.float64)
    layer = 0
    while f"dense_arch.model._mlp.{layer}._linear.weight" in s:
        prefix = f"dense_arch.model._mlp.{layer}._linear"
        x = relu(x @ s[f"{prefix}.weight"].T + s[f"{prefix}.bias"])
        layer += 1
    pooled = [
        s[f"sparse_arch.embedding_bag_collection.embedding_bags.t_cat_{k}.weight"][ids].sum(axis=1)
        for k, ids in enumerate(sparse_ids)
    ]
    combined = np.concatenate([x[:, None, :], np.stack(pooled, axis=1)], axis=1)
    x_0 = combined.reshape(x.shape[0], -1)
    x_l = x_0
    layer = 0
    while f"inter_arch.crossnet.W_kernels.{layer}" in s:
        x_l_v = x_l @ s[f"inter_arch.crossnet.V_kernels.{layer}"].T  # F.linear(x_l, V)
        x_l_w = x_l_v @ s[f"inter_arch.crossnet.W_kernels.{layer}"].T  # F.linear(x_l_v, W)
        x_l = x_0 * (x_l_w + s[f"inter_arch.crossnet.bias.{layer}"]) + x_l
        layer += 1
    x = x_l
    layer = 0
    while f"over_arch.model.0._mlp.{layer}._linear.weight" in s:
        prefix = f"over_arch.model.0._mlp.{layer}._linear"
        x = relu(x @ s[f"{prefix}.weight"].T + s[f"{prefix}.bias"])
        layer += 1
    return x @ s["over_arch.model.1.weight"].T + s["over_arch.model.1.bias"]


def test_expected_shapes_are_the_hand_written_ones_in_torchrec_order():
    state = hand_written_state_dict()
    shapes = expected_shapes(CONFIG)
    assert list(shapes) == list(state)
    assert shapes == {key: value.shape for key, value in state.items()}


def test_import_then_export_is_bit_identical():
    state = hand_written_state_dict()
    model = import_torchrec_state_dict(CONFIG, state)
    exported = export_torchrec_state_dict(model)
    assert list(exported) == list(state)
    for key, value in state.items():
        assert exported[key].dtype == np.float32
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_imported_model_has_torchrec_forward_semantics():
    state = hand_written_state_dict(seed=1)
    model = import_torchrec_state_dict(CONFIG, state)
    batch = synthetic_features(CONFIG, 6, seed=3)
    sparse_ids = [np.asarray(batch.ids_of(feature.name)) for feature in CONFIG.features]
    expected = torchrec_forward(state, batch.dense, sparse_ids)[:, 0]  # logits: no sigmoid
    got = jax.jit(lambda m, x: m(x))(model, batch)["click"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert np.ptp(expected) > 0


def test_export_of_a_built_preset_round_trips():
    config = configs.get("dcnv2-tiny")
    model = config.build(nnx.Rngs(0))
    exported = export_torchrec_state_dict(model)
    assert len(exported) == 26 + 2 * 3 + 3 * 3 + 2 * 5
    assert exported["inter_arch.crossnet.W_kernels.0"].shape == (3456, 512)
    again = export_torchrec_state_dict(import_torchrec_state_dict(config, exported))
    for key, value in exported.items():
        np.testing.assert_array_equal(again[key], value, err_msg=key)


def test_torch_tensors_are_accepted():
    torch = pytest.importorskip("torch", reason="torch is an optional extra")
    state = hand_written_state_dict(seed=2)
    tensors = {key: torch.from_numpy(value.copy()) for key, value in state.items()}
    exported = export_torchrec_state_dict(import_torchrec_state_dict(CONFIG, tensors))
    for key, value in state.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.pop("inter_arch.crossnet.V_kernels.1"),
            r"lacks 1 key\(s\).*'inter_arch.crossnet.V_kernels.1' \(expected shape \[3, 16\]\)",
        ),
        (
            lambda s: s.update({"inter_arch.crossnet.V_kernels.2": np.zeros((3, 16), np.float32)}),
            r"holds 1 key\(s\) the preset does not have; the first is "
            r"'inter_arch.crossnet.V_kernels.2'",
        ),
        (
            lambda s: s.update({"inter_arch.crossnet.W_kernels.0": np.zeros((16, 4), np.float32)}),
            r"'inter_arch.crossnet.W_kernels.0' has shape \[16, 4\], but the preset expects "
            r"\[16, 3\]",
        ),
        (
            lambda s: s.update({"over_arch.model.1.bias": np.zeros((1,), np.int64)}),
            r"'over_arch.model.1.bias' has dtype int64; expected a floating-point array",
        ),
    ],
)
def test_mismatched_state_dicts_are_named(edit, message):
    state = hand_written_state_dict()
    edit(state)
    with pytest.raises(StateDictMismatchError, match=message):
        import_torchrec_state_dict(CONFIG, state)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"bottom_mlp": (6, 5)}, r"dense arch to end in the embedding dim \(4\)"),
        ({"top_mlp": (1,)}, r"OverArch has at least two layers; got top_mlp=\(1,\)"),
        (
            {"features": (FEATURES[0], FEATURES[1])},
            r"tables \['t_cat_2'\] are read by no feature",
        ),
        (
            {
                "features": (
                    FEATURES[0],
                    FEATURES[1],
                    dataclasses.replace(FEATURES[2], name="again", table="t_cat_0"),
                    FEATURES[2],
                )
            },
            r"features of table 't_cat_0' must be next to each other",
        ),
    ],
)
def test_configs_torchrec_cannot_hold_are_refused(change, message):
    config = dataclasses.replace(CONFIG, **change)
    with pytest.raises(ValueError, match=message):
        check_layout(config)


def test_table_order_follows_the_features():
    config = dataclasses.replace(CONFIG, tables=tuple(reversed(TABLES)))
    assert torchrec_table_order(config) == ("t_cat_0", "t_cat_1", "t_cat_2")
    assert list(expected_shapes(config))[:3] == [
        f"sparse_arch.embedding_bag_collection.embedding_bags.t_cat_{k}.weight" for k in range(3)
    ]

"""The eager PyTorch DLRM against recjax: same weights, same inputs, same outputs."""

import dataclasses

import jax
import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.features import FeatureConfig
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.interop.reference_dlrm import expected_shapes, import_reference_state_dict
from recjax.layers.interactions import DotInteraction
from recjax.models.family import abstract_model
from recjax.runtime.inference import CompiledPredictor

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_dlrm = pytest.importorskip("recjax.interop.torch_dlrm")


@pytest.mark.parametrize("interaction", ["cat", "dot"])
@pytest.mark.parametrize("name", ["rmc1-tiny", "rmc2-tiny", "rmc3-tiny"])
def test_torch_agrees_with_recjax_jit(name, interaction):
    config = dataclasses.replace(configs.get(name), interaction=interaction)
    model = config.build(nnx.Rngs(1))
    batch = to_device(synthetic_features(config, 16, seed=2))
    expected = np.asarray(CompiledPredictor(model, [16])(batch)["click"])
    predictor = torch_dlrm.TorchPredictor(model)
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert isinstance(got["click"], np.ndarray)
        assert got["click"].shape == (16,) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=1e-5, atol=0)


def test_torch_agrees_with_jit_when_features_read_tables_out_of_order():
    """Feature k reads the table emb_l.<k>, whatever the order of the config's tables."""
    config = configs.get("rmc2-tiny")
    config = dataclasses.replace(
        config,
        tables=tuple(reversed(config.tables)),
        features=tuple(
            dataclasses.replace(feature, capacity=1 + index % 3)
            for index, feature in enumerate(config.features)
        ),
    )
    model = config.build(nnx.Rngs(6))
    batch = synthetic_features(config, 4, seed=7)
    expected = np.asarray(CompiledPredictor(model, [4])(batch)["click"])
    got = torch_dlrm.TorchPredictor(model)(batch)["click"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pooling": "mean"}, r"'rmc1_table_1' \(pooling='mean'\)"),
        ({"fixed_length": False}, r"'rmc1_table_1' \(fixed_length=False \(ragged\)\)"),
        ({"weighted": True}, r"'rmc1_table_1' \(weighted=True\)"),
    ],
)
def test_features_the_twin_cannot_represent_are_refused_before_any_work(change, message):
    config = configs.get("rmc1-tiny")
    features = list(config.features)
    features[1] = dataclasses.replace(features[1], **change)
    config = dataclasses.replace(config, features=tuple(features))
    # An abstract model holds no weights: the refusal must come before any is read.
    with pytest.raises(ValueError, match=r"runs fixed-length, unweighted sum bags .*" + message):
        torch_dlrm.TorchPredictor(abstract_model(config))


def test_a_shared_table_is_refused_before_any_work():
    config = configs.get("rmc1-tiny")
    config = dataclasses.replace(
        config, features=(*config.features, FeatureConfig("again", "rmc1_table_0", capacity=2))
    )
    with pytest.raises(ValueError, match="one table per sparse feature"):
        torch_dlrm.TorchPredictor(abstract_model(config))


def test_invalid_batches_are_refused_like_the_compiled_predictor():
    config = configs.get("rmc3-tiny")
    model = config.build(nnx.Rngs(0))
    compiled = CompiledPredictor(model, [2])
    predictor = torch_dlrm.TorchPredictor(model)
    batch = synthetic_features(config, 2, seed=0)
    ids = np.array(batch.ids)
    ids[1, 3] = config.tables[0].num_rows  # one past the end of the first table
    lengths = np.array(batch.lengths)
    lengths[0, 2] -= 1  # a fixed-length bag one id short
    for bad, message in (
        (dataclasses.replace(batch, ids=ids), r"1 sparse id\(s\) out of range; the first is 1000"),
        (dataclasses.replace(batch, lengths=lengths), r"has length 19 at sample 0"),
    ):
        with pytest.raises(InvalidInputError, match=message) as expected:
            compiled(bad)
        with pytest.raises(InvalidInputError) as got:
            predictor(bad)
        assert str(got.value) == str(expected.value)
    with pytest.raises(ValueError, match=r"dense must have shape \['B', 2560\]"):
        predictor(dataclasses.replace(batch, dense=np.zeros((2, 1), np.float32)))


def test_torch_module_has_the_reference_state_dict_layout():
    config = dataclasses.replace(configs.get("rmc1-tiny"), interaction="dot")
    module = torch_dlrm.TorchDLRM(config)
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert shapes == expected_shapes(config)
    assert [type(layer).__name__ for layer in module.top_l] == [
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Linear",
        "Sigmoid",
    ]
    assert all(bag.mode == "sum" for bag in module.emb_l)


def test_import_accepts_torch_tensors():
    config = configs.get("rmc3-tiny")
    model = config.build(nnx.Rngs(4))
    state_dict = torch_dlrm.TorchDLRM.from_recjax(model).state_dict()
    assert all(isinstance(value, torch.Tensor) for value in state_dict.values())
    imported = import_reference_state_dict(config, state_dict)
    for expected, got in zip(
        jax.tree.leaves(nnx.state(model)), jax.tree.leaves(nnx.state(imported)), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def reference_interact_features(x, ly):
    """`DLRM_Net.interact_features` of facebookresearch/dlrm ("dot", no self-interaction)."""
    (batch_size, d) = x.shape
    T = torch.cat([x] + ly, dim=1).view((batch_size, -1, d))
    Z = torch.bmm(T, torch.transpose(T, 1, 2))
    _, ni, nj = Z.shape
    offset = 0
    li = torch.tensor([i for i in range(ni) for j in range(i + offset)])
    lj = torch.tensor([j for i in range(nj) for j in range(i + offset)])
    Zflat = Z[:, li, lj]
    return torch.cat([x] + [Zflat], dim=1)


def test_dot_interaction_order_matches_the_reference_dlrm():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((3, 8), dtype=np.float32)
    pooled = rng.standard_normal((3, 5, 8), dtype=np.float32)
    expected = reference_interact_features(
        torch.from_numpy(dense), list(torch.from_numpy(pooled).unbind(1))
    ).numpy()
    interaction = DotInteraction(8, 5, 8, rngs=nnx.Rngs(0))
    got = np.asarray(nnx.jit(lambda module, d, p: module(d, p))(interaction, dense, pooled))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_set_torch_threads_reports_both_counts():
    cores = torch_dlrm.usable_cores()
    assert torch_dlrm.set_torch_threads(cores) == {
        "torch_version": torch.__version__,
        "torch_num_threads": cores,
        "torch_num_interop_threads": cores,
    }
    with pytest.raises(ValueError, match="num_threads must be positive; got 0"):
        torch_dlrm.set_torch_threads(0)

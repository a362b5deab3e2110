"""The eager PyTorch DCN-V2 (TorchRec's module tree) against recjax: same weights, same outputs."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.interop import torch_twins
from recjax.interop.torchrec_dlrm_dcn import expected_shapes
from recjax.models.family import abstract_model
from recjax.runtime.inference import CompiledPredictor
from tests.random_parameters import with_random_parameters

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_dcnv2 = pytest.importorskip("recjax.interop.torch_dcnv2")


@pytest.fixture(scope="module")
def model():
    return configs.get("dcnv2-tiny").build(nnx.Rngs(1))


def test_torch_agrees_with_recjax_jit(model):
    batch = to_device(synthetic_features(model.config, 16, seed=2))
    expected = np.asarray(CompiledPredictor(model, [16])(batch)["click"])
    predictor = torch_twins.torch_predictor(model)
    assert type(predictor) is torch_dcnv2.TorchPredictor
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert got["click"].shape == (16,) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=1e-5, atol=0)


def test_torch_agrees_with_random_biases_and_other_cross_options():
    config = dataclasses.replace(
        configs.get("dcnv2-tiny"), cross_layers=2, cross_rank=16, top_mlp=(64, 1)
    )
    model = with_random_parameters(config.build(nnx.Rngs(3)), seed=4, scale=0.02)
    batch = synthetic_features(config, 5, seed=5)
    expected = np.asarray(CompiledPredictor(model, [5])(batch)["click"])
    assert np.ptp(expected) > 1e-3
    got = torch_dcnv2.TorchPredictor(model)(batch)["click"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


def test_torch_module_has_torchrec_state_dict_keys_and_shapes():
    config = configs.get("dcnv2-tiny")
    module = torch_dcnv2.TorchDCNv2(config)
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert list(shapes) == list(expected_shapes(config))
    assert shapes == expected_shapes(config)
    bags = module.sparse_arch.embedding_bag_collection.embedding_bags
    assert all(bag.mode == "sum" for bag in bags.values())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pooling": "mean"}, r"'cat_1' \(pooling='mean'\)"),
        ({"fixed_length": False}, r"'cat_1' \(fixed_length=False \(ragged\)\)"),
        ({"weighted": True}, r"'cat_1' \(weighted=True\)"),
    ],
)
def test_features_the_twin_cannot_represent_are_refused_before_any_work(change, message):
    config = configs.get("dcnv2-tiny")
    features = list(config.features)
    features[1] = dataclasses.replace(features[1], **change)
    config = dataclasses.replace(config, features=tuple(features))
    with pytest.raises(
        ValueError, match=r"DCN-V2 runs fixed-length, unweighted sum bags .*" + message
    ):
        torch_dcnv2.TorchPredictor(abstract_model(config))


def test_invalid_batches_are_refused_like_the_compiled_predictor(model):
    compiled = CompiledPredictor(model, [2])
    predictor = torch_dcnv2.TorchPredictor(model)
    batch = synthetic_features(model.config, 2, seed=0)
    ids = np.array(batch.ids)
    ids[1, 0] = model.config.tables[0].num_rows  # one past the end of the first table
    bad = dataclasses.replace(batch, ids=ids)
    with pytest.raises(InvalidInputError) as expected:
        compiled(bad)
    with pytest.raises(InvalidInputError) as got:
        predictor(bad)
    assert str(got.value) == str(expected.value)

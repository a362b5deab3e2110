"""The eager PyTorch DeepFM against recjax: same weights, same outputs."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.interop import torch_twins
from recjax.models.family import abstract_model
from recjax.runtime.inference import CompiledPredictor
from tests.random_parameters import with_random_parameters

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_deepfm = pytest.importorskip("recjax.interop.torch_deepfm")


@pytest.mark.parametrize("dense_as_fields", [True, False])
def test_torch_agrees_with_recjax_jit(dense_as_fields):
    config = dataclasses.replace(configs.get("deepfm-tiny"), dense_as_fields=dense_as_fields)
    model = with_random_parameters(config.build(nnx.Rngs(1)), seed=2, scale=0.05)
    batch = to_device(synthetic_features(config, 16, seed=3))
    expected = np.asarray(CompiledPredictor(model, [16])(batch)["click"])
    assert np.ptp(expected) > 1e-3
    predictor = torch_twins.torch_predictor(model)
    assert type(predictor) is torch_deepfm.TorchPredictor
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert got["click"].shape == (16,) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=1e-5, atol=0)


def test_torch_module_layout():
    config = configs.get("deepfm-tiny")
    module = torch_deepfm.TorchDeepFM(config)
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert shapes["embeddings.C3.weight"] == (1000, 16)
    assert shapes["first_order.C3_first_order.weight"] == (1000, 1)
    assert shapes["dense_linear.weight"] == (1, 13) and shapes["dense_embedding"] == (13, 16)
    assert [type(layer).__name__ for layer in module.deep] == ["Linear", "ReLU"] * 3 + ["Linear"]
    assert len(module.embeddings) == len(module.first_order) == 26


def test_features_the_twin_cannot_represent_are_refused_before_any_work():
    config = configs.get("deepfm-tiny")
    features = list(config.features)
    features[2] = dataclasses.replace(features[2], pooling="mean")
    config = dataclasses.replace(config, features=tuple(features))
    with pytest.raises(ValueError, match=r"DeepFM runs fixed-length.*'C3' \(pooling='mean'\)"):
        torch_deepfm.TorchPredictor(abstract_model(config))


def test_invalid_batches_are_refused_like_the_compiled_predictor():
    config = configs.get("deepfm-tiny")
    model = config.build(nnx.Rngs(0))
    compiled = CompiledPredictor(model, [2])
    predictor = torch_deepfm.TorchPredictor(model)
    batch = synthetic_features(config, 2, seed=0)
    dense = np.array(batch.dense)
    dense[0, 4] = np.nan
    bad = dataclasses.replace(batch, dense=dense)
    with pytest.raises(InvalidInputError) as expected:
        compiled(bad)
    with pytest.raises(InvalidInputError) as got:
        predictor(bad)
    assert str(got.value) == str(expected.value)

"""The eager PyTorch NeuMF against recjax: same weights, same inputs, same outputs."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features, to_device
from recjax.runtime.inference import CompiledPredictor
from tests.models.numpy_reference import randomize_biases
from tests.models.test_ncf import SMALL

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_ncf = pytest.importorskip("recjax.interop.torch_ncf")


@pytest.mark.parametrize("name", ["ncf-tiny", "small"])
def test_torch_agrees_with_recjax_jit(name):
    config = SMALL if name == "small" else configs.get(name)
    model = config.build(nnx.Rngs(1))
    randomize_biases(model, seed=0)
    batch = to_device(synthetic_features(config, 16, seed=2))
    expected = np.asarray(CompiledPredictor(model, [16])(batch)["click"])
    predictor = torch_ncf.TorchPredictor(model)
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert got["click"].shape == (16,) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=1e-5, atol=0)


def test_torch_module_is_neumf():
    module = torch_ncf.TorchNCF(configs.get("ncf-tiny"))
    shapes = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert shapes == {
        "embed_user_gmf.weight": (1000, 64),
        "embed_item_gmf.weight": (1000, 64),
        "embed_user_mlp.weight": (1000, 64),
        "embed_item_mlp.weight": (1000, 64),
        "mlp.0.weight": (256, 128),
        "mlp.0.bias": (256,),
        "mlp.2.weight": (256, 256),
        "mlp.2.bias": (256,),
        "mlp.4.weight": (128, 256),
        "mlp.4.bias": (128,),
        "mlp.6.weight": (64, 128),
        "mlp.6.bias": (64,),
        "predict_layer.weight": (1, 128),
    }
    assert [type(layer).__name__ for layer in module.mlp][-1] == "ReLU"


def test_invalid_batches_are_refused_like_the_compiled_predictor():
    config = configs.get("ncf-tiny")
    model = config.build(nnx.Rngs(0))
    compiled = CompiledPredictor(model, [2])
    predictor = torch_ncf.TorchPredictor(model)
    batch = synthetic_features(config, 2, seed=0)
    ids = np.array(batch.ids)
    ids[1, 2] = 1000  # user_mlp, one past the end of its table
    bad = dataclasses.replace(batch, ids=ids)
    with pytest.raises(InvalidInputError, match=r"feature 'user_mlp'.*\[0, 1000\)") as expected:
        compiled(bad)
    with pytest.raises(InvalidInputError) as got:
        predictor(bad)
    assert str(got.value) == str(expected.value)
    with pytest.raises(ValueError, match=r"dense must have shape \['B', 0\]"):
        predictor(dataclasses.replace(batch, dense=np.zeros((2, 1), np.float32)))

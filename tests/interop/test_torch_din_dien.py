"""The eager PyTorch DIN and DIEN against recjax: same weights, same inputs, outputs within 1e-5."""

import dataclasses

import numpy as np
import pytest
from flax import nnx

import configs
from recjax.inputs.checks import InvalidInputError
from recjax.inputs.synthetic import synthetic_features
from recjax.interop import torch_twins
from recjax.runtime.inference import CompiledPredictor
from tests.models import sequence_reference as reference

torch = pytest.importorskip("torch", reason="torch is an optional extra: pip install -e '.[torch]'")
torch_din = pytest.importorskip("recjax.interop.torch_din")
torch_dien = pytest.importorskip("recjax.interop.torch_dien")

LENGTHS = [0, 1, 2, 37, 100, 63, 5, 100]


def compare(config, seed):
    model = reference.randomize(config.build(nnx.Rngs(seed)), seed=seed + 1, weight_scale=0.15)
    batch = reference.batch_with_lengths(config, LENGTHS, seed=seed + 2)
    expected = np.asarray(CompiledPredictor(model, [len(LENGTHS)])(batch)["click"])
    assert np.ptp(expected) > 0.05, "outputs must not be saturated or constant"
    predictor = torch_twins.torch_predictor(model)
    for got in (predictor(batch), predictor(predictor.prepare(batch))):
        assert set(got) == {"click"}
        assert got["click"].shape == (len(LENGTHS),) and got["click"].dtype == np.float32
        np.testing.assert_allclose(got["click"], expected, rtol=1e-5, atol=1e-6)
    return predictor


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention_softmax": True, "dice_affine": True},
        {"attention_activation": "prelu", "mlp_activation": "relu"},
        {"attention_activation": "sigmoid", "mlp_activation": "prelu", "dense_features": 3},
    ],
    ids=["paper", "softmax-affine", "prelu-relu", "sigmoid-dense"],
)
def test_torch_din_agrees_with_recjax_jit(changes):
    predictor = compare(dataclasses.replace(configs.get("din-tiny"), **changes), seed=0)
    assert type(predictor) is torch_din.TorchPredictor


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"attention": "mlp", "attention_activation": "dice", "dice_affine": True},
        {"gru_hidden": 40, "auxiliary_loss": "mlp", "mlp_activation": "prelu"},
    ],
    ids=["paper", "mlp-attention", "hidden-40"],
)
def test_torch_dien_agrees_with_recjax_jit(changes):
    predictor = compare(dataclasses.replace(configs.get("dien-tiny"), **changes), seed=3)
    assert type(predictor) is torch_dien.TorchPredictor
    assert isinstance(predictor.module.interest_extractor, torch.nn.GRU)


@pytest.mark.parametrize("name", ["din-tiny", "dien-tiny"])
def test_a_batch_of_empty_sequences_runs_in_both(name):
    config = configs.get(name)
    model = config.build(nnx.Rngs(0))
    batch = reference.batch_with_lengths(config, [0, 0, 0], seed=4)
    expected = np.asarray(CompiledPredictor(model, [3])(batch)["click"])
    got = torch_twins.torch_predictor(model)(batch)["click"]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("name", ["din-tiny", "dien-tiny"])
def test_the_twins_reject_what_the_compiled_predictor_rejects(name):
    config = configs.get(name)
    predictor = torch_twins.torch_predictor(config.build(nnx.Rngs(0)))
    batch = synthetic_features(config, 2, seed=5)
    lengths = np.array(batch.lengths)
    lengths[1, 4] += 1  # the category sequence no longer matches the item sequence
    with pytest.raises(InvalidInputError, match=r"shares the lengths of feature 'behaviour_item'"):
        predictor(dataclasses.replace(batch, lengths=lengths))


def test_weighted_or_ragged_pooled_features_are_refused_by_name():
    config = configs.get("din-tiny")
    features = tuple(
        dataclasses.replace(f, weighted=True) if f.name == "context" else f for f in config.features
    )
    model = dataclasses.replace(config, features=features).build(nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"it cannot run \['context'\]"):
        torch_twins.torch_predictor(model)
